// Package kubetest starts a real kube-apiserver and etcd (controller-
// runtime's envtest) for tests, with the CRDs Inflow reads installed.
//
// The binaries come from `make kube-assets` (bin/k8s/<version>/, or
// KUBEBUILDER_ASSETS). Without them a test skips with a message saying so,
// unless INFLOW_REQUIRE_KUBE=1 (set by `make test`), which makes a missing
// binary a failure: CI never silently skips these tests.
package kubetest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// RequireEnv, when "1", turns missing assets into a test failure.
const RequireEnv = "INFLOW_REQUIRE_KUBE"

// Root is the repository root (the folder holding build/versions.env).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := FindRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// FindRoot walks up from dir to the repository root.
func FindRoot(dir string) (string, error) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "build", "versions.env")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: no build/versions.env above the working directory")
		}
		dir = parent
	}
}

// Assets is the folder holding kube-apiserver and etcd; it skips the test
// when they are missing, or fails it under INFLOW_REQUIRE_KUBE=1.
func Assets(t testing.TB) string {
	t.Helper()
	dir, err := FindAssets(Root(t))
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal(err.Error() + " [" + RequireEnv + "=1: this test may not be skipped]")
		}
		t.Skip(err.Error())
	}
	return dir
}

// FindAssets is $KUBEBUILDER_ASSETS, else bin/k8s/<KUBERNETES_VERSION>
// under root; an error says how to build what is missing.
func FindAssets(root string) (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		v, err := version(root)
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin", "k8s", v)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("kubetest: %s not found in %s: run `make kube-assets` (about 5 minutes cold)", bin, dir)
		}
	}
	return dir, nil
}

func version(root string) (string, error) {
	f, err := os.Open(filepath.Join(root, "build", "versions.env"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "KUBERNETES_VERSION="); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("kubetest: KUBERNETES_VERSION missing from build/versions.env")
}

// Cluster is a running API server.
type Cluster struct {
	Config *rest.Config
	env    *envtest.Environment
}

// Start runs kube-apiserver and etcd with the Inference Extension's CRDs
// (build/k8s/crds, copied from the module) and stand-ins for the Envoy AI
// Gateway's and Envoy Gateway's CRDs; it stops them when the test ends.
func Start(t testing.TB) *Cluster { return StartWith(t) }

// StartWith is Start with the CRDs of more folders installed (such as
// Gateway API's, for the Envoy Gateway mode's HTTPRoutes).
func StartWith(t testing.TB, crdDirs ...string) *Cluster {
	t.Helper()
	c, err := StartCluster(Root(t), Assets(t), crdDirs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("kubetest: stop: %v", err)
		}
	})
	return c
}

// StartCluster is StartWith for programs (benchmarks): the caller stops it.
func StartCluster(root, assets string, crdDirs ...string) (*Cluster, error) {
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     append([]string{filepath.Join(root, "build", "k8s", "crds")}, crdDirs...),
		CRDs:                  StandInCRDs(),
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("kubetest: start kube-apiserver: %w", err)
	}
	return &Cluster{Config: cfg, env: env}, nil
}

// Stop ends kube-apiserver and etcd.
func (c *Cluster) Stop() error { return c.env.Stop() }

// KubeConfig is a kubeconfig for an administrator of the cluster, for
// processes (the control-plane binary) to connect with.
func (c *Cluster) KubeConfig() []byte { return c.env.KubeConfig }

// StandInCRDs are schema-less CRDs for the kinds whose owners' modules we
// cannot download (the Envoy AI Gateway) or do not depend on (Envoy
// Gateway's Backend). Inflow reads them unstructured, so what matters is
// the group, versions, names and status subresource; users install the
// real CRDs with those projects.
func StandInCRDs() []*apiextensionsv1.CustomResourceDefinition {
	return []*apiextensionsv1.CustomResourceDefinition{
		standIn("aigateway.envoyproxy.io", "AIGatewayRoute", "aigatewayroutes", "v1beta1", "v1alpha1"),
		standIn("aigateway.envoyproxy.io", "AIServiceBackend", "aiservicebackends", "v1beta1", "v1alpha1"),
		standIn("aigateway.envoyproxy.io", "BackendSecurityPolicy", "backendsecuritypolicies", "v1beta1", "v1alpha1"),
		standIn("gateway.envoyproxy.io", "Backend", "backends", "v1alpha1"),
	}
}

func standIn(group, kind, plural string, versions ...string) *apiextensionsv1.CustomResourceDefinition {
	preserve := true
	crd := &apiextensionsv1.CustomResourceDefinition{
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Kind: kind, ListKind: kind + "List", Plural: plural, Singular: strings.ToLower(kind),
			},
			Scope: apiextensionsv1.NamespaceScoped,
		},
	}
	crd.Name = plural + "." + group
	for i, v := range versions {
		crd.Spec.Versions = append(crd.Spec.Versions, apiextensionsv1.CustomResourceDefinitionVersion{
			Name: v, Served: true, Storage: i == 0,
			Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
				Type: "object", XPreserveUnknownFields: &preserve,
			}},
			Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
		})
	}
	return crd
}

// User is a client config for a user named name with no rights beyond
// what RBAC objects grant it: tests bind the shipped Roles to it.
func (c *Cluster) User(name string) (*rest.Config, error) {
	u, err := c.env.AddUser(envtest.User{Name: name}, nil)
	if err != nil {
		return nil, fmt.Errorf("kubetest: user %s: %w", name, err)
	}
	return u.Config(), nil
}

// GatewayAPICRDs is the folder of Gateway API's standard CRDs in the
// module go.mod pins (for StartWith): the API server then validates
// HTTPRoutes, their CEL rules included, as a cluster with Gateway API does.
func GatewayAPICRDs(t testing.TB) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api")
	cmd.Dir = Root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubetest: go list sigs.k8s.io/gateway-api: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
}
