package e2e

import (
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	giev1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"

	"github.com/inflow-gateway/inflow/controlplane/kube"
	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// TestKubernetesThroughHost runs the Kubernetes source against a real
// kube-apiserver and etcd and checks, through the xDS-driven host and the
// real filter, that what users change in the cluster changes where
// requests go. Each subtest has its own namespace, control plane and host.
func TestKubernetesThroughHost(t *testing.T) {
	c := kubetest.Start(t)
	t.Run("pods", func(t *testing.T) { testKubePods(t, c.Namespace(t, "pods")) })
	t.Run("objectives", func(t *testing.T) { testKubeObjectives(t, c.Namespace(t, "objectives")) })
	t.Run("broken route", func(t *testing.T) { testKubeBrokenRoute(t, c.Namespace(t, "broken")) })
	t.Run("not ready under load", func(t *testing.T) { testKubeNotReadyUnderLoad(t, c.Namespace(t, "flips")) })
	t.Run("backend split", func(t *testing.T) { testKubeBackendSplit(t, c.Namespace(t, "split")) })
	t.Run("hostnames and timeouts", func(t *testing.T) { testKubeHostnamesAndTimeouts(t, c.Namespace(t, "hosts")) })
	t.Run("api key", func(t *testing.T) { testKubeAPIKey(t, c.Namespace(t, "keys")) })
}

const gemma = "gemma-2-9b"

func poolName(ns *kubetest.Namespace, name string) string {
	return kube.PoolName(types.NamespacedName{Namespace: ns.Name, Name: name})
}

// testKubePods: requests reach exactly the Ready pods of the pool's
// selector at its target ports, through readiness flips, a deletion, a
// selector edit and a new target port.
func testKubePods(t *testing.T, ns *kubetest.Namespace) {
	ips := []string{"127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4"}
	port := freeLoopbackPort(t)
	s := startKubeStack(t, ns, nil, false)
	a, b, c, other := s.podServer(gemma, ips[0], port), s.podServer(gemma, ips[1], port),
		s.podServer(gemma, ips[2], port), s.podServer(gemma, ips[3], port)
	app := map[string]string{"app": "gemma2"}
	ns.Pod("a", ips[0], app, true, nil)
	ns.Pod("b", ips[1], app, true, nil)
	ns.Pod("c", ips[2], app, false, nil)
	ns.Pod("other", ips[3], map[string]string{"app": "llama"}, true, nil)
	ns.Pool("gemma2", app, port)
	ns.Route(kubetest.RoutesGVR, "llm", kubetest.ModelRule(gemma, kubetest.PoolRef("gemma2")))
	pool := poolName(ns, "gemma2")
	ep := func(i int) string { return hostPort(ips[i], port) }

	s.applied("the Ready pods of the selector", endpointsAre(pool, ep(0), ep(1)))
	s.chatUntil("both Ready pods served", gemma, func() bool { return a.requests() > 0 && b.requests() > 0 })
	if n := c.requests() + other.requests(); n != 0 {
		t.Fatalf("a NotReady pod and a pod outside the selector got %d requests", n)
	}

	ns.SetReady("c", true)
	s.applied("c turned Ready", endpointsAre(pool, ep(0), ep(1), ep(2)))
	s.chatUntil("c served once Ready", gemma, func() bool { return c.requests() > 0 })

	ns.SetReady("a", false)
	s.applied("a turned NotReady", endpointsAre(pool, ep(1), ep(2)))
	before := counts(a, b, c, other)
	s.chatOK(gemma, 20)
	if got := grew(before, counts(a, b, c, other)); got[0] || got[3] || !got[1] || !got[2] {
		t.Fatalf("after a turned NotReady, requests reached (a, b, c, other) = %v, want only b and c", got)
	}

	ns.DeletePod("b")
	s.applied("b deleted", endpointsAre(pool, ep(2)))
	before = counts(a, b, c, other)
	s.chatOK(gemma, 10)
	if after := counts(a, b, c, other); after[2]-before[2] != 10 {
		t.Fatalf("after b was deleted, c got %d of 10 requests (before %v, after %v)", after[2]-before[2], before, after)
	}

	ns.EditPool("gemma2", func(p *giev1.InferencePool) {
		p.Spec.Selector.MatchLabels = map[giev1.LabelKey]giev1.LabelValue{"app": "llama"}
	})
	s.applied("the selector edited", endpointsAre(pool, ep(3)))
	before = counts(a, b, c, other)
	s.chatOK(gemma, 10)
	if after := counts(a, b, c, other); after[3]-before[3] != 10 {
		t.Fatalf("after the selector edit, other got %d of 10 requests (before %v, after %v)", after[3]-before[3], before, after)
	}

	second := freeLoopbackPort(t)
	otherSecond := s.podServer(gemma, ips[3], second)
	ns.EditPool("gemma2", func(p *giev1.InferencePool) {
		p.Spec.TargetPorts = append(p.Spec.TargetPorts, giev1.Port{Number: giev1.PortNumber(second)})
	})
	s.applied("a new target port", endpointsAre(pool, ep(3), hostPort(ips[3], second)))
	s.chatUntil("the new target port served", gemma, func() bool { return otherSecond.requests() > 0 })
	if n := a.requests() + b.requests(); n != before[0]+before[1] {
		t.Errorf("pods out of the pool got requests: %d", n-before[0]-before[1])
	}
	if n := stat(t, s.host, "listener.public.downstream_cx_drained"); n != 0 {
		t.Errorf("pod churn drained %d connections", n)
	}
}

// testKubeObjectives: an InferenceObjective with priority -1 is shed with
// 429 while the pool reports saturation, and only it: requests of other
// objectives and without one are served; after saturation ends it is
// served again.
func testKubeObjectives(t *testing.T, ns *kubetest.Namespace) {
	port := freeLoopbackPort(t)
	s := startKubeStack(t, ns, nil, false)
	servers := []*podServer{s.podServer("qwen", "127.0.2.1", port), s.podServer("qwen", "127.0.2.2", port)}
	app := map[string]string{"app": "qwen"}
	ns.Pod("q1", "127.0.2.1", app, true, nil)
	ns.Pod("q2", "127.0.2.2", app, true, nil)
	ns.Pool("qwen", app, port)
	ns.Route(kubetest.RoutesGVR, "llm", kubetest.ModelRule("qwen", kubetest.PoolRef("qwen")))
	minus := -1
	ns.Objective("batch", "qwen", &minus)
	ns.Objective("chat", "qwen", nil)
	pool := poolName(ns, "qwen")
	s.applied("the objectives on the pool", func(c *config.Config) bool {
		return endpointsAre(pool, hostPort("127.0.2.1", port), hostPort("127.0.2.2", port))(c) &&
			slices.ContainsFunc(c.Pools, func(p config.Pool) bool { return p.Name == pool && len(p.Objectives) == 2 })
	})
	batch := option.WithHeader(protocol.HeaderObjective, "batch")
	s.chatOK("qwen", 3, batch)

	waiting := 50
	for _, p := range servers {
		p.SetMetricsOverride(sim.MetricsOverride{NumRequestsWaiting: &waiting})
	}
	var shed error
	if err := poll.Until(t.Context(), kubeAwait, "a batch request shed while every pod reports 50 waiting", func() bool {
		_, shed = s.chat(testContext(t), "qwen", batch)
		return shed != nil
	}); err != nil {
		t.Fatal(err)
	}
	if e := apiError(t, shed, http.StatusTooManyRequests); e.Code != "pool_saturated" {
		t.Fatalf("429 code %q", e.Code)
	}
	before := counts(servers...)
	if _, err := s.chat(testContext(t), "qwen", batch); apiError(t, err, http.StatusTooManyRequests) == nil {
		t.Fatal("unreachable")
	}
	if after := counts(servers...); !slices.Equal(before, after) {
		t.Fatalf("a shed request reached a pod: %v -> %v", before, after)
	}
	s.chatOK("qwen", 3, option.WithHeader(protocol.HeaderObjective, "chat"))
	s.chatOK("qwen", 3)

	for _, p := range servers {
		p.SetMetricsOverride(sim.MetricsOverride{})
	}
	if err := poll.Until(t.Context(), kubeAwait, "batch served once saturation ended", func() bool {
		_, err := s.chat(testContext(t), "qwen", batch)
		return err == nil
	}); err != nil {
		t.Fatal(err)
	}
}

// testKubeBrokenRoute: an AIGatewayRoute Inflow cannot serve gets status
// conditions saying why, and the other routes keep serving through the
// host before, during and after; fixing it serves it.
func testKubeBrokenRoute(t *testing.T, ns *kubetest.Namespace) {
	port := freeLoopbackPort(t)
	s := startKubeStack(t, ns, nil, true)
	g := s.podServer(gemma, "127.0.3.1", port, "missing") // serves the broken route's model once fixed
	app := map[string]string{"app": "gemma2"}
	ns.Pod("g", "127.0.3.1", app, true, nil)
	ns.Pool("gemma2", app, port)
	ns.Route(kubetest.RoutesGVR, "good", kubetest.ModelRule(gemma, kubetest.PoolRef("gemma2")))
	s.applied("the good route", hasModel(gemma))
	s.chatOK(gemma, 3)

	ns.Route(kubetest.RoutesGVR, "broken", kubetest.ModelRule("missing", kubetest.PoolRef("nope")),
		map[string]any{"matches": []any{map[string]any{"headers": []any{
			map[string]any{"type": "RegularExpression", "name": "x-ai-eg-model", "value": "gpt-.*"}}}}})
	awaitConditions(t, ns, "broken", func(conds []metav1.Condition) bool {
		a, r := kubetest.FindCondition(conds, "Accepted"), kubetest.FindCondition(conds, "ResolvedRefs")
		return a != nil && a.Status == metav1.ConditionFalse && r != nil && r.Status == metav1.ConditionFalse &&
			r.Reason == "BackendNotFound"
	})
	before := g.requests()
	s.chatOK(gemma, 5)
	if n := g.requests() - before; n != 5 {
		t.Fatalf("the good route's pod got %d of 5 requests beside the broken route", n)
	}
	_, err := s.chat(testContext(t), "missing")
	if e := apiError(t, err, http.StatusNotFound); e.Code != "model_not_found" {
		t.Fatalf("the broken route's model: code %q", e.Code)
	}

	ns.Pool("nope", app, port)
	s.applied("the fixed route", hasModel("missing"))
	s.chatOK("missing", 2)
	awaitConditions(t, ns, "broken", func(conds []metav1.Condition) bool {
		r := kubetest.FindCondition(conds, "ResolvedRefs")
		return r != nil && r.Status == metav1.ConditionTrue
	})
	s.chatOK(gemma, 2)
}

func awaitConditions(t *testing.T, ns *kubetest.Namespace, route string, cond func([]metav1.Condition) bool) {
	t.Helper()
	if err := poll.Until(t.Context(), kubeAwait, "status of AIGatewayRoute "+route, func() bool {
		return cond(ns.RouteConditions(route))
	}); err != nil {
		t.Fatalf("%v; conditions: %+v", err, ns.RouteConditions(route))
	}
}

// testKubeNotReadyUnderLoad: under steady load, each pod that turns
// NotReady gets no request sent after the host took the update without it,
// no request fails through the flips, and nothing drains. It logs how long
// each flip took from the status write to the host routing by it.
func testKubeNotReadyUnderLoad(t *testing.T, ns *kubetest.Namespace) {
	ips := []string{"127.0.4.1", "127.0.4.2", "127.0.4.3"}
	port := freeLoopbackPort(t)
	s := startKubeStack(t, ns, nil, false)
	app := map[string]string{"app": "gemma2"}
	servers := make([]*podServer, len(ips))
	names := []string{"p0", "p1", "p2"}
	eps := make([]string, len(ips))
	for i, ip := range ips {
		servers[i] = s.podServer(gemma, ip, port)
		ns.Pod(names[i], ip, app, true, nil)
		eps[i] = hostPort(ip, port)
	}
	ns.Pool("gemma2", app, port)
	ns.Route(kubetest.RoutesGVR, "llm", kubetest.ModelRule(gemma, kubetest.PoolRef("gemma2")))
	pool := poolName(ns, "gemma2")
	s.applied("every pod", endpointsAre(pool, eps...))

	load := startLoad(t, s, gemma, 4)
	var lat []time.Duration
	const flips = 6
	for i := range flips {
		k := i % len(ips)
		rest := slices.Delete(slices.Clone(eps), k, k+1)
		start := s.since()
		ns.SetReady(names[k], false)
		s.applied(names[k]+" NotReady", endpointsAre(pool, rest...))
		applied := s.since()
		lat = append(lat, applied-start)
		load.await(t, 20) // requests sent after the update, so some could have gone to it
		if n := servers[k].sentAfter(applied); n != 0 {
			t.Fatalf("flip %d: %s got %d requests sent after the host took the update without it", i, names[k], n)
		}
		ns.SetReady(names[k], true)
		s.applied(names[k]+" Ready again", endpointsAre(pool, eps...))
		back := s.since()
		if err := poll.Until(t.Context(), kubeAwait, names[k]+" served again", func() bool { return servers[k].sentAfter(back) > 0 }); err != nil {
			t.Fatal(err)
		}
	}
	sent, failed := load.stop()
	if failed != nil {
		t.Fatalf("a request failed during the flips: %v", failed)
	}
	if n := stat(t, s.host, "listener.public.downstream_cx_drained"); n != 0 {
		t.Errorf("the flips drained %d connections", n)
	}
	slices.Sort(lat)
	t.Logf("%d requests through %d NotReady flips, none failed; status write -> host routing by it: median %v, max %v",
		sent, flips, lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
}

// load is concurrent clients sending chat requests until stop.
type load struct {
	stopped atomic.Bool
	wg      sync.WaitGroup
	sent    atomic.Int64
	mu      sync.Mutex
	failed  error
}

func startLoad(t *testing.T, s *kubeStack, model string, clients int) *load {
	l := &load{}
	for range clients {
		l.wg.Go(func() {
			for !l.stopped.Load() {
				_, err := s.chat(t.Context(), model)
				if err != nil && !l.stopped.Load() {
					l.mu.Lock()
					l.failed = errors.Join(l.failed, err)
					l.mu.Unlock()
					return
				}
				l.sent.Add(1)
			}
		})
	}
	t.Cleanup(func() { l.stop() })
	return l
}

// await waits until n more requests completed.
func (l *load) await(t *testing.T, n int64) {
	t.Helper()
	target := l.sent.Load() + n
	if err := poll.Until(t.Context(), kubeAwait, "requests under load", func() bool {
		l.mu.Lock()
		failed := l.failed != nil
		l.mu.Unlock()
		return failed || l.sent.Load() >= target
	}); err != nil {
		t.Fatal(err)
	}
}

func (l *load) stop() (int64, error) {
	l.stopped.Store(true)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent.Load(), l.failed
}
