package kube_test

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	giev1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/inflow-gateway/inflow/controlplane/kube"
	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/filter/config"
)

// TestKubernetes runs the Kubernetes source against a real kube-apiserver
// and etcd; each subtest has its own namespace and control plane.
func TestKubernetes(t *testing.T) {
	c := kubetest.Start(t)
	t.Run("pod churn", func(t *testing.T) { testPodChurn(t, newFixture(t, c, "churn")) })
	t.Run("objectives", func(t *testing.T) { testObjectives(t, newFixture(t, c, "objectives")) })
	t.Run("routes and status", func(t *testing.T) { testRoutes(t, newFixture(t, c, "routes")) })
	t.Run("external backends", func(t *testing.T) { testBackends(t, newFixture(t, c, "backends")) })
	t.Run("two replicas", func(t *testing.T) { testReplicas(t, newFixture(t, c, "replicas")) })
	t.Run("shipped RBAC", func(t *testing.T) { testShippedRBAC(t, c, newFixture(t, c, "rbac")) })
}

// testPodChurn: endpoints are the Ready pods of the selector at every
// target port, as the EPP picks them, through readiness flips, deletions,
// a selector edit, a new target port and the active-ports annotation.
func testPodChurn(t *testing.T, f *fixture) {
	ips := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"}
	port := simulators(t, "gemma-2-9b", ips...)
	app := map[string]string{"app": "gemma2"}
	f.Pod("a", ips[0], app, true, nil)
	f.Pod("b", ips[1], app, true, nil)
	f.Pod("c", ips[2], app, false, nil)
	f.Pod("other", ips[3], map[string]string{"app": "llama"}, true, nil)
	f.Pool("gemma2", app, port)
	f.Route(kubetest.RoutesGVR, "llm", kubetest.ModelRule("gemma-2-9b", kubetest.PoolRef("gemma2")))
	cp := f.controlPlane("", nil)
	pool := kube.PoolName(nsName(f.Name, "gemma2"))

	got := cp.await("Ready pods of the selector", endpointsAre(pool, ep(ips[0], port), ep(ips[1], port)))
	if m := modelOf(got, "gemma-2-9b"); m == nil || m.Pool != pool || m.Rewrite != nil {
		t.Fatalf("model from the AIGatewayRoute: %+v", m)
	}

	f.SetReady("c", true)
	cp.await("c turned Ready", endpointsAre(pool, ep(ips[0], port), ep(ips[1], port), ep(ips[2], port)))
	f.SetReady("a", false)
	cp.await("a turned NotReady", endpointsAre(pool, ep(ips[1], port), ep(ips[2], port)))
	f.DeletePod("b")
	cp.await("b deleted", endpointsAre(pool, ep(ips[2], port)))

	// A pod being deleted (finalizer holds it) is no endpoint any more.
	f.UpdatePod("c", func(p *corev1.Pod) { p.Finalizers = []string{"example.com/hold"} })
	if err := f.Kube.CoreV1().Pods(f.Name).Delete(f.Ctx, "c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cp.await("c terminating", endpointsAre(pool))
	f.UpdatePod("c", func(p *corev1.Pod) { p.Finalizers = nil })

	f.SetReady("a", true)
	cp.await("a Ready again", endpointsAre(pool, ep(ips[0], port)))
	f.EditPool("gemma2", func(p *giev1.InferencePool) {
		p.Spec.Selector.MatchLabels = map[giev1.LabelKey]giev1.LabelValue{"app": "llama"}
	})
	cp.await("selector edited", endpointsAre(pool, ep(ips[3], port)))

	second := port + 1
	f.EditPool("gemma2", func(p *giev1.InferencePool) {
		p.Spec.TargetPorts = append(p.Spec.TargetPorts, giev1.Port{Number: giev1.PortNumber(second)})
	})
	cp.await("a new target port", endpointsAre(pool, ep(ips[3], port), ep(ips[3], second)))
	f.UpdatePod("other", func(p *corev1.Pod) {
		p.Annotations = map[string]string{kube.ActivePortsAnnotation: "9, " + itoa(second)}
	})
	cp.await("active-ports narrows the ports", endpointsAre(pool, ep(ips[3], second)))
}

// testObjectives: each InferenceObjective becomes a priority of its pool;
// an unset priority is 0, as the EPP treats it.
func testObjectives(t *testing.T, f *fixture) {
	app := map[string]string{"app": "qwen"}
	f.Pod("q", "127.0.0.21", app, true, nil)
	f.Pool("qwen", app, 8000)
	f.Pool("other", map[string]string{"app": "none"}, 8000)
	f.Route(kubetest.RoutesGVR, "llm", kubetest.ModelRule("qwen", kubetest.PoolRef("qwen")), kubetest.ModelRule("other", kubetest.PoolRef("other")))
	minus, ten := -1, 10
	f.Objective("batch", "qwen", &minus)
	f.Objective("chat", "qwen", nil)
	f.Objective("critical", "other", &ten)
	cp := f.controlPlane("", nil)
	qwen, other := kube.PoolName(nsName(f.Name, "qwen")), kube.PoolName(nsName(f.Name, "other"))
	cp.await("objectives per pool", func(c *config.Config) bool {
		q, o := poolOf(c, qwen), poolOf(c, other)
		return q != nil && o != nil && q.Objectives["batch"] == -1 && hasKey(q.Objectives, "chat") && q.Objectives["chat"] == 0 &&
			!hasKey(q.Objectives, "critical") && o.Objectives["critical"] == 10 && !hasKey(o.Objectives, "batch")
	})
	// The filter reads them per pool: batch sheds on qwen, not elsewhere.
	got := cp.await("served", func(*config.Config) bool { return true })
	q := poolOf(got, qwen)
	if p := q.PriorityFor(got, "batch"); p != -1 {
		t.Errorf("batch on qwen: priority %d, want -1 (sheddable)", p)
	}
	if p := poolOf(got, other).PriorityFor(got, "batch"); p != 0 {
		t.Errorf("batch on another pool: priority %d, want 0", p)
	}
}

func hasKey(m map[string]int, k string) bool { _, ok := m[k]; return ok }

// testRoutes: both AIGatewayRoute versions are served; a broken route is
// reported on its status with an Event while the others keep serving;
// modelNameOverride becomes a rewrite; pools get status.parents.
func testRoutes(t *testing.T, f *fixture) {
	app := map[string]string{"app": "gemma2"}
	f.Pod("a", "127.0.0.31", app, true, nil)
	f.Pool("gemma2", app, 8000)
	f.Route(kubetest.RoutesGVR, "good", kubetest.ModelRule("gemma-2-9b", kubetest.PoolRef("gemma2")))
	lora := kubetest.PoolRef("gemma2")
	lora["modelNameOverride"] = "support-lora"
	f.Route(kubetest.RoutesV1Alpha1, "legacy", kubetest.ModelRule("support", lora))
	f.Route(kubetest.RoutesGVR, "broken", kubetest.ModelRule("missing", kubetest.PoolRef("nope")),
		map[string]any{"matches": []any{map[string]any{"headers": []any{
			map[string]any{"type": "RegularExpression", "name": "x-ai-eg-model", "value": "gpt-.*"}}}}})
	cp := f.controlPlane("", &kube.Election{Namespace: f.Name, Name: "inflow", Identity: "only"})
	pool := kube.PoolName(nsName(f.Name, "gemma2"))
	got := cp.await("good routes served", func(c *config.Config) bool {
		return modelOf(c, "gemma-2-9b") != nil && modelOf(c, "support") != nil
	})
	if m := modelOf(got, "support"); m.Pool != pool || len(m.Rewrite) != 1 || m.Rewrite[0].Model != "support-lora" {
		t.Errorf("modelNameOverride on an InferencePool ref: %+v", m)
	}
	if modelOf(got, "missing") != nil {
		t.Error("a model whose pool does not exist is served")
	}

	waitStatus(t, f, "broken", func(conds []metav1.Condition) bool {
		a, r := kubetest.FindCondition(conds, "Accepted"), kubetest.FindCondition(conds, "ResolvedRefs")
		return a != nil && a.Status == metav1.ConditionFalse && r != nil && r.Status == metav1.ConditionFalse &&
			r.Reason == "BackendNotFound" && contains(a.Message, "RegularExpression") && contains(r.Message, "nope")
	})
	waitStatus(t, f, "good", func(conds []metav1.Condition) bool {
		a := kubetest.FindCondition(conds, "Accepted")
		return a != nil && a.Status == metav1.ConditionTrue && kubetest.FindCondition(conds, "ResolvedRefs").Status == metav1.ConditionTrue
	})
	waitFor(t, "a Warning Event on the broken route", func() bool {
		evs, err := f.Kube.CoreV1().Events(f.Name).List(f.Ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=broken"})
		return err == nil && slices.ContainsFunc(evs.Items, func(e corev1.Event) bool {
			return e.Type == corev1.EventTypeWarning && e.Reason == "BackendNotFound"
		})
	})
	waitFor(t, "InferencePool status.parents", func() bool {
		p, err := f.GIE.InferenceV1().InferencePools(f.Name).Get(f.Ctx, "gemma2", metav1.GetOptions{})
		if err != nil || len(p.Status.Parents) != 1 {
			return false
		}
		ps := p.Status.Parents[0]
		a := kubetest.FindCondition(ps.Conditions, "Accepted")
		return ps.ControllerName == kube.ControllerName && string(ps.ParentRef.Name) == "ai-gateway" &&
			a != nil && a.Status == metav1.ConditionTrue && kubetest.FindCondition(ps.Conditions, "ResolvedRefs") != nil
	})

	// Fixing the route serves it, and its status follows.
	f.Pool("nope", app, 8000)
	cp.await("the fixed route", func(c *config.Config) bool { return modelOf(c, "missing") != nil })
	waitStatus(t, f, "broken", func(conds []metav1.Condition) bool {
		r := kubetest.FindCondition(conds, "ResolvedRefs")
		return r != nil && r.Status == metav1.ConditionTrue
	})
}

func waitStatus(t *testing.T, f *fixture, route string, cond func([]metav1.Condition) bool) {
	t.Helper()
	waitFor(t, "status of AIGatewayRoute "+route, func() bool { return cond(f.RouteConditions(route)) })
}
