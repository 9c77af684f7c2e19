package kube

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	giev1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/filter/config"
)

func base() *spec.Config {
	return &spec.Config{
		Listeners:  []spec.Listener{{Name: "public", Address: "127.0.0.1", Port: 10000}},
		Kubernetes: &spec.Kubernetes{Namespaces: []string{"ns"}},
	}
}

func pool(name string, ports ...int32) *giev1.InferencePool {
	p := &giev1.InferencePool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Generation: 1}}
	p.Spec.Selector.MatchLabels = map[giev1.LabelKey]giev1.LabelValue{"app": giev1.LabelValue(name)}
	for _, n := range ports {
		p.Spec.TargetPorts = append(p.Spec.TargetPorts, giev1.Port{Number: giev1.PortNumber(n)})
	}
	return p
}

func route(name string, age time.Duration, rules ...any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "aigateway.envoyproxy.io/v1beta1", "kind": "AIGatewayRoute",
		"metadata": map[string]any{"name": name, "namespace": "ns"},
		"spec":     map[string]any{"parentRefs": []any{map[string]any{"name": "gw"}}, "rules": rules},
	}}
	u.SetCreationTimestamp(metav1.NewTime(time.Unix(1_000_000, 0).Add(age)))
	return u
}

func rule(models []string, refs ...any) map[string]any {
	var matches []any
	for _, m := range models {
		matches = append(matches, map[string]any{"headers": []any{map[string]any{"name": "x-ai-eg-model", "value": m}}})
	}
	return map[string]any{"matches": matches, "backendRefs": refs}
}

func pref(name string) map[string]any {
	return map[string]any{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": name}
}

// TestBuildReportsWhatItCannotServe: each unsupported shape is reported on
// its route, naming the rule, while everything else is served.
func TestBuildReportsWhatItCannotServe(t *testing.T) {
	in := &Inputs{
		Pools: []*giev1.InferencePool{pool("a", 8000), pool("b", 8000), func() *giev1.InferencePool {
			p := pool("h2", 8000)
			p.Spec.AppProtocol = giev1.AppProtocolH2C
			return p
		}()},
		Routes: []*unstructured.Unstructured{
			route("old", 0, rule([]string{"shared", "m1"}, pref("a"))),
			route("new", time.Hour,
				rule([]string{"shared"}, pref("b")),                               // conflict: the older route keeps it
				rule([]string{"two-pools"}, pref("a"), pref("b")),                 // two pools in a rule
				rule([]string{"mixed"}, pref("a"), map[string]any{"name": "svc"}), // pool + backend
				rule([]string{"h2"}, pref("h2")),                                  // h2c
				rule([]string{"m2"}, pref("b")),                                   // fine
				map[string]any{"backendRefs": []any{pref("a")}},                   // no matches: a catch-all
				map[string]any{"matches": []any{map[string]any{"headers": []any{
					map[string]any{"name": "x-ai-eg-model", "value": "m3"}, map[string]any{"name": "x-tenant", "value": "t"}}}},
					"backendRefs": []any{pref("a")}}, // an extra header
			),
		},
	}
	res := Build(base(), in)
	if err := res.Config.Validate(); err != nil {
		t.Fatalf("the built spec must validate: %v", err)
	}
	models := map[string]string{}
	for _, m := range res.Config.Models {
		models[m.Name] = m.Pool
	}
	want := map[string]string{"shared": "ns.a", "m1": "ns.a", "m2": "ns.b"}
	if len(models) != len(want) {
		t.Errorf("served models %v, want %v", models, want)
	}
	for m, p := range want {
		if models[m] != p {
			t.Errorf("model %q on pool %q, want %q", m, models[m], p)
		}
	}
	old, nw := res.Routes[types.NamespacedName{Namespace: "ns", Name: "old"}], res.Routes[types.NamespacedName{Namespace: "ns", Name: "new"}]
	if len(old.Problems)+len(old.Unresolved) != 0 || old.Served != 1 {
		t.Errorf("the old route: %+v", old)
	}
	all := strings.Join(append(nw.Problems, nw.Unresolved...), "\n")
	for _, w := range []string{
		`rules[0]: model "shared" is already served by AIGatewayRoute ns/old`,
		"rules[1]: only one InferencePool per rule",
		"rules[2]: InferencePool and AIServiceBackend references cannot be mixed",
		`rules[3].backendRefs[0]: InferencePool ns/h2: appProtocol "kubernetes.io/h2c" is not supported`,
		"rules[5]: a rule without matches",
		"rules[6].matches[0]: only a single x-ai-eg-model header match",
	} {
		if !strings.Contains(all, w) {
			t.Errorf("missing report %q in:\n%s", w, all)
		}
	}
	if nw.Served != 1 {
		t.Errorf("new route served %d rules, want 1 (m2)", nw.Served)
	}
	if rep := res.Pools[types.NamespacedName{Namespace: "ns", Name: "h2"}]; rep == nil || rep.Problem == "" {
		t.Errorf("the h2c pool's report: %+v", rep)
	}
}

// TestBuildGatewaysFilter: with gateways set, routes of other Gateways are
// neither served nor reported on.
func TestBuildGatewaysFilter(t *testing.T) {
	b := base()
	b.Kubernetes.Gateways = []string{"ns/other"}
	res := Build(b, &Inputs{Pools: []*giev1.InferencePool{pool("a", 8000)}, Routes: []*unstructured.Unstructured{route("r", 0, rule([]string{"m"}, pref("a")))}})
	if len(res.Config.Models) != 0 || len(res.Routes) != 0 {
		t.Fatalf("a route of gateway ns/gw served under gateways [ns/other]: %+v", res.Config.Models)
	}
	b.Kubernetes.Gateways = []string{"ns/gw"}
	res = Build(b, &Inputs{Pools: []*giev1.InferencePool{pool("a", 8000)}, Routes: []*unstructured.Unstructured{route("r", 0, rule([]string{"m"}, pref("a")))}})
	if len(res.Config.Models) != 1 {
		t.Fatalf("the route of ns/gw is not served: %+v", res.Config.Models)
	}
}

func svcRef(name string, extra map[string]any) map[string]any {
	m := map[string]any{"name": name}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// TestBuildBackendRules: refs to several AIServiceBackends become a split
// (weights, priorities, each ref's modelNameOverride), with the backend and
// rewrite older filters serve; one backend's refs stay a weighted rewrite;
// weight 0 takes no traffic.
func TestBuildBackendRules(t *testing.T) {
	u := route("r", 0,
		rule([]string{"split"}, svcRef("a", map[string]any{"weight": int64(3)}), svcRef("b", map[string]any{"modelNameOverride": "split-b"}),
			svcRef("c", map[string]any{"priority": int64(1)}), svcRef("a", map[string]any{"weight": int64(0), "modelNameOverride": "never"})),
		rule([]string{"one"}, svcRef("a", map[string]any{"modelNameOverride": "one-x", "weight": int64(9)}), svcRef("a", nil)),
		rule([]string{"fallback-only-first"}, svcRef("c", map[string]any{"priority": int64(2)}), svcRef("b", map[string]any{"priority": int64(1)})))
	var r aiGatewayRoute
	if err := decodeSpec(u, &r); err != nil {
		t.Fatal(err)
	}
	rep := &RouteReport{}
	var got []config.Model
	for i, rl := range r.Rules {
		d, ok := destination(rep, fmt.Sprintf("rules[%d]", i), "ns", rl)
		if !ok {
			t.Fatalf("rules[%d] not served: %v", i, rep.Problems)
		}
		got = append(got, d.model(rl.Matches[0].Headers[0].Value))
	}
	if len(rep.Problems)+len(rep.Unresolved) > 0 {
		t.Errorf("reported: %v %v", rep.Problems, rep.Unresolved)
	}
	w := func(n uint32) *uint32 { return &n }
	want := []config.Model{
		{Name: "split", Backend: "ns.a", BackendRefs: []config.BackendRef{
			{Backend: "ns.a", Weight: w(3)}, {Backend: "ns.b", Model: "split-b", Weight: w(1)}, {Backend: "ns.c", Weight: w(1), Priority: 1}}},
		{Name: "one", Backend: "ns.a", Rewrite: []config.Target{{Model: "one-x", Weight: w(9)}, {Model: "one", Weight: w(1)}}},
		{Name: "fallback-only-first", Backend: "ns.b", BackendRefs: []config.BackendRef{
			{Backend: "ns.c", Weight: w(1), Priority: 2}, {Backend: "ns.b", Weight: w(1), Priority: 1}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("models\n got %+v\nwant %+v", got, want)
	}
}

// TestBuildTimeoutsAndHostnames: a rule's timeouts.request is its models'
// route timeout (the AI Gateway's 60 s without it); backendRequest is
// reported; the route's hostnames are its models'; a route with a bad
// hostname is reported, not served everywhere.
func TestBuildTimeoutsAndHostnames(t *testing.T) {
	timed := rule([]string{"timed"}, pref("a"))
	timed["timeouts"] = map[string]any{"request": "5m", "backendRequest": "30s"}
	off := rule([]string{"off"}, pref("a"))
	off["timeouts"] = map[string]any{"request": "0s"}
	hosted := route("hosted", 0, timed, off, rule([]string{"default"}, pref("a")))
	hosted.Object["spec"].(map[string]any)["hostnames"] = []any{"API.example.com", "*.internal.example.com"}
	bad := route("bad", time.Minute, rule([]string{"nowhere"}, pref("a")))
	bad.Object["spec"].(map[string]any)["hostnames"] = []any{"not a host"}
	res := Build(base(), &Inputs{Pools: []*giev1.InferencePool{pool("a", 8000)}, Routes: []*unstructured.Unstructured{hosted, bad}})
	if err := res.Config.Validate(); err != nil {
		t.Fatalf("the built spec must validate: %v", err)
	}
	hosts := []string{"api.example.com", "*.internal.example.com"}
	for model, timeout := range map[string]string{"timed": "5m0s", "off": "0s", "default": "1m0s"} {
		if mr := res.Config.RouteOf(model); mr.Timeout != timeout || !slices.Equal(mr.Hostnames, hosts) {
			t.Errorf("%s: route %+v, want timeout %s and hostnames %v", model, mr, timeout, hosts)
		}
	}
	rep := res.Routes[types.NamespacedName{Namespace: "ns", Name: "hosted"}]
	if all := strings.Join(rep.Problems, "\n"); !strings.Contains(all, "rules[0].timeouts.backendRequest is not applied") || len(rep.Problems) != 1 {
		t.Errorf("problems of the hosted route: %v", rep.Problems)
	}
	if slices.ContainsFunc(res.Config.Models, func(m config.Model) bool { return m.Name == "nowhere" }) {
		t.Error("a route with a bad hostname is served")
	}
	if p := res.Routes[types.NamespacedName{Namespace: "ns", Name: "bad"}].Problems; len(p) != 1 || !strings.Contains(p[0], `hostnames[0]: "not a host"`) {
		t.Errorf("problems of the bad route: %v", p)
	}
}

// TestEndpointsAsTheEPP: readiness, deletion, namespace, IP and the
// active-ports annotation, as the EPP reads them.
func TestEndpointsAsTheEPP(t *testing.T) {
	p := pool("a", 8000, 8001)
	now := metav1.Now()
	mk := func(name, ns, ip string, ready bool, mut func(*corev1.Pod)) *corev1.Pod {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "a"}},
			Status: corev1.PodStatus{PodIP: ip}}
		s := corev1.ConditionFalse
		if ready {
			s = corev1.ConditionTrue
		}
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: s}}
		if mut != nil {
			mut(pod)
		}
		return pod
	}
	pods := []*corev1.Pod{
		mk("ready", "ns", "10.0.0.1", true, nil),
		mk("notready", "ns", "10.0.0.2", false, nil),
		mk("deleting", "ns", "10.0.0.3", true, func(p *corev1.Pod) { p.DeletionTimestamp = &now }),
		mk("elsewhere", "other", "10.0.0.4", true, nil),
		mk("noip", "ns", "", true, nil),
		mk("one-port", "ns", "10.0.0.5", true, func(p *corev1.Pod) { p.Annotations = map[string]string{ActivePortsAnnotation: "8001, 9999"} }),
		mk("no-port", "ns", "10.0.0.6", true, func(p *corev1.Pod) { p.Annotations = map[string]string{ActivePortsAnnotation: ""} }),
		mk("other-app", "ns", "10.0.0.7", true, func(p *corev1.Pod) { p.Labels = map[string]string{"app": "b"} }),
	}
	got := strings.Join(Endpoints(p, pods), ",")
	if want := "10.0.0.1:8000,10.0.0.1:8001,10.0.0.5:8001"; got != want {
		t.Fatalf("endpoints %s, want %s", got, want)
	}
}

// TestBuildRouteCosts: a route's llmRequestCosts are the costs of each of
// its models; one the filter cannot compute, or a repeated key, is
// reported and left out, the others kept.
func TestBuildRouteCosts(t *testing.T) {
	u := route("costed", 0, rule([]string{"a", "b"}, pref("a")))
	u.Object["spec"].(map[string]any)["llmRequestCosts"] = []any{
		map[string]any{"metadataKey": "llm_total_token", "type": "TotalToken"},
		map[string]any{"metadataKey": "weighted", "type": "CEL", "cel": "input_tokens + 3u * output_tokens"},
		map[string]any{"metadataKey": "broken", "type": "CEL", "cel": "input_tokens +"},
		map[string]any{"metadataKey": "llm_total_token", "type": "InputToken"},
	}
	plain := route("plain", time.Minute, rule([]string{"c"}, pref("a")))
	res := Build(base(), &Inputs{Pools: []*giev1.InferencePool{pool("a", 8000)}, Routes: []*unstructured.Unstructured{u, plain}})
	if err := res.Config.Validate(); err != nil {
		t.Fatalf("the built spec must validate: %v", err)
	}
	for _, m := range res.Config.Models {
		var keys []string
		for _, c := range m.Costs {
			keys = append(keys, c.MetadataKey+"="+string(c.Type))
		}
		got := strings.Join(keys, ",")
		if exp := map[string]string{"a": "llm_total_token=TotalToken,weighted=CEL", "b": "llm_total_token=TotalToken,weighted=CEL", "c": ""}[m.Name]; got != exp {
			t.Errorf("model %s: costs %s, want %s", m.Name, got, exp)
		}
	}
	p := strings.Join(res.Routes[types.NamespacedName{Namespace: "ns", Name: "costed"}].Problems, "\n")
	if !strings.Contains(p, "llmRequestCosts[2]: cel") || !strings.Contains(p, `llmRequestCosts[3]: metadataKey "llm_total_token" is repeated`) {
		t.Errorf("problems: %s", p)
	}
}
