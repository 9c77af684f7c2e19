package kube

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

func aiObject(version, kind, name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": version, "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": "ns"}, "spec": spec,
	}}
}

// TestBackendPolicyAttachments: an APIKey policy reaches its backend both
// ways the AI Gateway attaches one: v1beta1's targetRefs on the policy and
// v1alpha1's backendSecurityPolicyRef on the backend (whose policy has no
// targetRefs); a ref to a missing policy is an error, not a keyless
// backend.
func TestBackendPolicyAttachments(t *testing.T) {
	eg := aiObject("gateway.envoyproxy.io/v1alpha1", "Backend", "openai", map[string]any{
		"endpoints": []any{map[string]any{"fqdn": map[string]any{"hostname": "api.openai.com", "port": int64(443)}}},
	})
	backendRef := map[string]any{"name": "openai", "kind": "Backend", "group": "gateway.envoyproxy.io"}
	apiKey := func(secret string) map[string]any {
		return map[string]any{"type": "APIKey", "apiKey": map[string]any{"secretRef": map[string]any{"name": secret}}}
	}
	targeted := apiKey("beta-key")
	targeted["targetRefs"] = []any{map[string]any{"group": "aigateway.envoyproxy.io", "kind": "AIServiceBackend", "name": "beta"}}
	in := &Inputs{
		EGBackends: []*unstructured.Unstructured{eg},
		Backends: []*unstructured.Unstructured{
			aiObject("aigateway.envoyproxy.io/v1beta1", "AIServiceBackend", "beta", map[string]any{"schema": map[string]any{"name": "OpenAI"}, "backendRef": backendRef}),
			aiObject("aigateway.envoyproxy.io/v1alpha1", "AIServiceBackend", "alpha", map[string]any{"schema": map[string]any{"name": "OpenAI"}, "backendRef": backendRef,
				"backendSecurityPolicyRef": map[string]any{"name": "alpha-policy"}}),
			aiObject("aigateway.envoyproxy.io/v1alpha1", "AIServiceBackend", "dangling", map[string]any{"schema": map[string]any{"name": "OpenAI"}, "backendRef": backendRef,
				"backendSecurityPolicyRef": map[string]any{"name": "no-such-policy"}}),
		},
		Policies: []*unstructured.Unstructured{
			aiObject("aigateway.envoyproxy.io/v1beta1", "BackendSecurityPolicy", "beta-policy", targeted),
			aiObject("aigateway.envoyproxy.io/v1alpha1", "BackendSecurityPolicy", "alpha-policy", apiKey("alpha-key")),
		},
	}
	r := newBackendResolver(in, "/etc/inflow/credentials")
	for name, secret := range map[string]string{"beta": "beta-key", "alpha": "alpha-key"} {
		b, err := r.resolve(types.NamespacedName{Namespace: "ns", Name: name})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := CredentialFile("/etc/inflow/credentials", types.NamespacedName{Namespace: "ns", Name: secret})
		if b.APIKey == nil || b.APIKey.SecretFile != want {
			t.Errorf("%s: api key %+v, want the file of Secret ns/%s (%s)", name, b.APIKey, secret, want)
		}
	}
	if _, err := r.resolve(types.NamespacedName{Namespace: "ns", Name: "dangling"}); err == nil || !strings.Contains(err.Error(), "no-such-policy") {
		t.Errorf("a ref to a missing policy: %v, want it reported", err)
	}
}
