package kube

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	giev1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/inflow-gateway/inflow/controlplane/spec"
)

// In Envoy Gateway mode every InferencePool is a pool (Envoy Gateway's
// routes pick theirs), AIGatewayRoute matches may carry other headers and
// hostnames (Envoy Gateway matches those), and rules to AIServiceBackends
// are reported, not served.
func TestBuildEnvoyGatewayMode(t *testing.T) {
	b := base()
	b.Listeners, b.EnvoyGateway = nil, &spec.EnvoyGateway{}
	withHeader := rule([]string{"llama"}, pref("a"))
	withHeader["matches"] = []any{map[string]any{"headers": []any{
		map[string]any{"name": "x-ai-eg-model", "value": "llama"},
		map[string]any{"name": "x-tenant", "value": "gold"},
	}}}
	r := route("r", 0, withHeader, rule([]string{"gpt"}, map[string]any{"name": "openai"}))
	r.Object["spec"].(map[string]any)["hostnames"] = []any{"llm.example.com"}
	res := Build(b, &Inputs{Pools: []*giev1.InferencePool{pool("a", 8000), pool("unrouted", 8000)}, Routes: []*unstructured.Unstructured{r}})

	var pools []string
	for _, p := range res.Config.Pools {
		pools = append(pools, p.Name)
	}
	if strings.Join(pools, ",") != "ns.a,ns.unrouted" {
		t.Errorf("pools %v, want every InferencePool", pools)
	}
	if len(res.Config.Models) != 1 || res.Config.Models[0].Name != "llama" || res.Config.Models[0].Pool != "ns.a" {
		t.Errorf("models %+v, want llama on ns.a (its other header is Envoy Gateway's to match)", res.Config.Models)
	}
	rep := res.Routes[types.NamespacedName{Namespace: "ns", Name: "r"}]
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "AIServiceBackend") {
		t.Errorf("problems %q: want only the AIServiceBackend rule", rep.Problems)
	}
	if err := res.Config.Validate(); err != nil {
		t.Errorf("the build is not a valid config: %v", err)
	}

	// The same route without Envoy Gateway: a match on other headers
	// cannot be served by Inflow's own routes (hostnames are, since the
	// Kubernetes source honours them), and an unrouted pool is not served.
	b.EnvoyGateway, b.Listeners = nil, base().Listeners
	res = Build(b, &Inputs{Pools: []*giev1.InferencePool{pool("a", 8000), pool("unrouted", 8000)}, Routes: []*unstructured.Unstructured{r}})
	own := res.Routes[types.NamespacedName{Namespace: "ns", Name: "r"}].Problems
	if len(res.Config.Pools) != 0 || !slices.ContainsFunc(own, func(p string) bool { return strings.Contains(p, "only a single x-ai-eg-model header match") }) {
		t.Errorf("own mode: pools %v, problems %q", res.Config.Pools, own)
	}
}
