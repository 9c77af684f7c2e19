package kube

import (
	"path"

	"k8s.io/apimachinery/pkg/types"
)

// ControllerName identifies Inflow in the status it writes: its
// InferencePool status.parents entries, so entries of other controllers
// (Envoy Gateway, the AI Gateway) are left alone.
const ControllerName = "inflow-gateway.github.io/controlplane"

// PoolName is the spec (and Envoy cluster and stats) name of an
// InferencePool. Namespaces hold no dots, so the first dot splits it back.
func PoolName(n types.NamespacedName) string { return n.Namespace + "." + n.Name }

// BackendName is the spec name of an AIServiceBackend.
func BackendName(n types.NamespacedName) string { return n.Namespace + "." + n.Name }

// CredentialFile is where, inside the Envoy pod, the credential sidecar
// writes the SDS file for Secret n and where the control plane tells Envoy
// to read it. Both sides compute it from the Secret's name alone, so the
// control plane never needs to read the Secret.
func CredentialFile(dir string, n types.NamespacedName) string {
	return path.Join(dir, n.Namespace+"."+n.Name+".json")
}

// KeyFile is the raw key beside it, which the SDS file names (Envoy
// re-reads it when it is replaced, and picks it up if it appears late).
func KeyFile(dir string, n types.NamespacedName) string {
	return path.Join(dir, n.Namespace+"."+n.Name+".key")
}

// CredentialName is the SDS Secret's name inside that file.
func CredentialName(n types.NamespacedName) string { return "apikey/" + n.Namespace + "/" + n.Name }
