package kube

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	giev1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/inflow-gateway/inflow/controlplane/spec"
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

// TestBuildBackendRules: priorities and splits across different
// AIServiceBackends are reported; zero weights take no traffic.
func TestBuildBackendRules(t *testing.T) {
	svc := func(name string, extra map[string]any) map[string]any {
		m := map[string]any{"name": name}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	rep := &RouteReport{}
	u := route("r", 0, rule([]string{"m"}, svc("a", nil), svc("b", nil), svc("c", map[string]any{"priority": int64(1)}),
		svc("a", map[string]any{"weight": int64(0), "modelNameOverride": "never"})))
	var spec aiGatewayRoute
	if err := decodeSpec(u, &spec); err != nil {
		t.Fatal(err)
	}
	d, ok := destination(rep, "rules[0]", "ns", spec.Rules[0])
	if !ok || d.backend.Name != "a" || len(d.overrides) != 1 {
		t.Fatalf("destination %+v ok=%v", d, ok)
	}
	all := strings.Join(rep.Problems, "\n")
	for _, w := range []string{"splitting a model across AIServiceBackends is not supported; ns/b", "priority 1 fallback backends are not supported; ns/c"} {
		if !strings.Contains(all, w) {
			t.Errorf("missing %q in %s", w, all)
		}
	}
	if got := d.rewrite("m"); got != nil {
		t.Errorf("no override means no rewrite, got %+v", got)
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
