package envoygateway

import (
	"encoding/json"
	"strings"

	extension "github.com/envoyproxy/gateway/proto/extension"
	"k8s.io/apimachinery/pkg/types"

	"github.com/inflow-gateway/inflow/controlplane/kube"
)

// InferencePool is the backendResources kind Envoy Gateway hands over.
const (
	inferencePoolGroup = "inference.networking.k8s.io"
	inferencePoolKind  = "InferencePool"
)

// object is the part of an unstructured object the hooks read.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// inferencePools are the spec names of the InferencePools among rs, in
// order. Envoy Gateway passes every extension resource of the route or
// cluster; other kinds are not Inflow's.
func inferencePools(rs []*extension.ExtensionResource) []string {
	var out []string
	for _, r := range rs {
		var o object
		if err := json.Unmarshal(r.GetUnstructuredBytes(), &o); err != nil {
			continue // not ours to judge: Envoy Gateway validated it
		}
		group, _, _ := strings.Cut(o.APIVersion, "/")
		if group == inferencePoolGroup && o.Kind == inferencePoolKind && o.Metadata.Name != "" {
			// The Kubernetes source's name for the pool, which a file lists too.
			out = append(out, kube.PoolName(types.NamespacedName{Namespace: o.Metadata.Namespace, Name: o.Metadata.Name}))
		}
	}
	return out
}
