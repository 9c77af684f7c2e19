package envoyfilter

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// modelServer serves vLLM-style /metrics with numbers the test sets.
type modelServer struct {
	srv     *httptest.Server
	waiting atomic.Int64
	kvMilli atomic.Int64
}

func startModelServer(t *testing.T, waiting int64, kv float64) *modelServer {
	t.Helper()
	m := &modelServer{}
	m.set(waiting, kv)
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"m\"} %d\n", m.waiting.Load())
		fmt.Fprintf(w, "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 1\n")
		fmt.Fprintf(w, "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=\"m\"} %g\n", float64(m.kvMilli.Load())/1000)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *modelServer) set(waiting int64, kv float64) {
	m.waiting.Store(waiting)
	m.kvMilli.Store(int64(kv * 1000))
}

func (m *modelServer) addr() string { return strings.TrimPrefix(m.srv.URL, "http://") }

// waitForMetrics polls until every endpoint of the model's pool has fresh
// metrics matching want (the scrapers run in the background).
func waitForMetrics(t *testing.T, h *harness, model string, want func(*pool.Metrics) bool) {
	t.Helper()
	eps := h.endpoints(model)
	poll.Eventually(t, "scraped metrics of every endpoint", func() bool {
		for _, ep := range eps {
			if mt := ep.Metrics(); !mt.Fresh(time.Now(), time.Second) || !want(mt) {
				return false
			}
		}
		return true
	})
}

func schedulingConfig(pool string, addrs ...string) string {
	return `{"models":[{"name":"m","pool":"` + pool + `"}],
	  "pools":[{"name":"` + pool + `","endpoints":["` + strings.Join(addrs, `","`) + `"],
	            "scheduler":{"scrape_interval":"10ms","staleness":"1s"}}],
	  "objectives":{"batch":-1,"interactive":10}}`
}

func TestPicksTheLeastLoadedServerFromScrapedMetrics(t *testing.T) {
	busy, idle := startModelServer(t, 4, 0.7), startModelServer(t, 0, 0.05)
	h := newHarness(t, schedulingConfig("sched-pick", busy.addr(), idle.addr()))
	t.Cleanup(h.cfg.Destroy)
	waitForMetrics(t, h, "m", func(m *pool.Metrics) bool { return m.Waiting == 0 || m.Waiting == 4 })
	for i := range 10 {
		r := h.do("POST", "/v1/chat/completions", fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"q%d"}]}`, i))
		if r.endpoint() != idle.addr() {
			t.Fatalf("request %d went to %s, want the idle server %s", i, r.endpoint(), idle.addr())
		}
		if md := r.cb.info.md.m[protocol.MetadataNamespaceLB][protocol.MetadataKeyDestination]; md != idle.addr()+","+busy.addr() {
			t.Fatalf("fallback list %v", md)
		}
		r.filter.OnDestroy(api.Normal)
	}
}

func TestSheddableRequestGets429WhenSaturated(t *testing.T) {
	a, b := startModelServer(t, 50, 0.99), startModelServer(t, 60, 0.97)
	h := newHarness(t, schedulingConfig("sched-shed", a.addr(), b.addr()))
	t.Cleanup(h.cfg.Destroy)
	waitForMetrics(t, h, "m", func(m *pool.Metrics) bool { return m.Waiting >= 50 })
	body := `{"model":"m","prompt":"x"}`
	r := h.do("POST", "/v1/completions", body, protocol.HeaderObjective, "batch")
	if r.reply == nil {
		t.Fatalf("sheddable request was routed to %s", r.endpoint())
	}
	checkOpenAIError(t, r.reply, 429, "pool_saturated")
	if got := h.metrics.counters[protocol.StatRejected429].v.Load(); got != 1 {
		t.Errorf("429 counter = %d", got)
	}
	// The same request with a critical objective is still served.
	r = h.do("POST", "/v1/completions", body, protocol.HeaderObjective, "interactive")
	if r.reply != nil || r.endpoint() == "" {
		t.Fatalf("non-sheddable request rejected: %+v", r.reply)
	}
	r.filter.OnDestroy(api.Normal)
	// Once a server has room again, sheddable requests flow.
	a.set(0, 0.1)
	waitForMetrics(t, h, "m", func(m *pool.Metrics) bool { return m.Waiting == 0 || m.Waiting == 60 })
	r = h.do("POST", "/v1/completions", body, protocol.HeaderObjective, "batch")
	if r.reply != nil || r.endpoint() != a.addr() {
		t.Fatalf("after recovery: reply %+v endpoint %s", r.reply, r.endpoint())
	}
	r.filter.OnDestroy(api.Normal)
}

// Endpoints nobody has scraped yet count as stale from the moment the
// config is parsed, not only after the first export a second later. Both
// endpoints here can never be scraped (one accepts and never answers, one
// refuses), so the value is not a race with a fast first scrape.
func TestStaleEndpointsAtParseTime(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	h := newHarness(t, schedulingConfig("sched-stale", silent.Addr().String(), "127.0.0.1:9"))
	t.Cleanup(h.cfg.Destroy)
	if got := h.metrics.gauges[protocol.PoolStat("sched-stale", protocol.PoolStatStaleEndpoints)].v.Load(); got != 2 {
		t.Errorf("stale_endpoints at parse time = %d, want 2", got)
	}
}

func TestPoolStatsReachEnvoyMetrics(t *testing.T) {
	srv := startModelServer(t, 0, 0.1)
	h := newHarness(t, schedulingConfig("sched-stats", srv.addr(), "127.0.0.1:9"))
	t.Cleanup(h.cfg.Destroy)
	for range 3 {
		r := h.do("POST", "/v1/completions", `{"model":"m","prompt":"x"}`)
		r.filter.OnDestroy(api.Normal)
	}
	picks := protocol.EndpointStat("sched-stats", srv.addr(), protocol.EndpointStatPicks)
	closed := protocol.EndpointStat("sched-stats", "127.0.0.1:9", protocol.EndpointStatPicks)
	errors := protocol.PoolStat("sched-stats", protocol.PoolStatScrapeErrors)
	// The exporter runs once a second.
	poll.Eventually(t, "3 picks and a scrape error exported", func() bool {
		return h.metrics.value(picks)+h.metrics.value(closed) == 3 && h.metrics.value(errors) > 0
	})
}

// With a relay configured the pool's relay stats exist, and a relay that
// cannot be reached shows as disconnected while picks go on (the replica
// works alone); without one they are not defined at all.
func TestSharedStateStatsOnlyWithARelay(t *testing.T) {
	srv := startModelServer(t, 0, 0.1)
	withRelay := strings.Replace(schedulingConfig("sched-shared", srv.addr()), `"objectives"`, `"shared_state":{"relay":"127.0.0.1:9"},"objectives"`, 1)
	h := newHarness(t, withRelay)
	t.Cleanup(h.cfg.Destroy)
	waitForMetrics(t, h, "m", func(m *pool.Metrics) bool { return m.Waiting == 0 })
	r := h.do("POST", "/v1/completions", `{"model":"m","prompt":"x"}`)
	if r.reply != nil || r.endpoint() != srv.addr() {
		t.Fatalf("pick with an unreachable relay: reply %+v endpoint %q", r.reply, r.endpoint())
	}
	r.filter.OnDestroy(api.Normal)
	connected := protocol.PoolStat("sched-shared", protocol.PoolStatSharedConnected)
	if g, ok := h.metrics.gauges[connected]; !ok || g.v.Load() != 0 {
		t.Errorf("%s defined %v, value %v; want defined and 0", connected, ok, g)
	}
	for _, stat := range []string{protocol.PoolStatScrapesSkipped, protocol.PoolStatSharedPlacementsSent, protocol.PoolStatSharedPlacementsReceived,
		protocol.PoolStatSharedPlacementsUnknown, protocol.PoolStatSharedPlacementsDropped, protocol.PoolStatSharedSnapshotsReceived} {
		if _, ok := h.metrics.counters[protocol.PoolStat("sched-shared", stat)]; !ok {
			t.Errorf("counter %s not defined", stat)
		}
	}
	alone := newHarness(t, schedulingConfig("sched-alone", srv.addr()))
	t.Cleanup(alone.cfg.Destroy)
	if _, ok := alone.metrics.gauges[protocol.PoolStat("sched-alone", protocol.PoolStatSharedConnected)]; ok {
		t.Error("relay stats defined for a pool without a relay")
	}
}

func TestSessionHeaderPinsAnEndpoint(t *testing.T) {
	a, b := startModelServer(t, 0, 0.1), startModelServer(t, 0, 0.1)
	cfg := strings.Replace(schedulingConfig("sched-session", a.addr(), b.addr()),
		`"staleness":"1s"`, `"staleness":"1s","session_header":"X-Session-ID"`, 1)
	h := newHarness(t, cfg)
	t.Cleanup(h.cfg.Destroy)
	waitForMetrics(t, h, "m", func(m *pool.Metrics) bool { return m.Waiting == 0 })
	// 64 sessions over 2 endpoints: hashing that works puts them all on one
	// endpoint with probability 2^-63.
	const sessions = 64
	seen := map[string]map[string]bool{}
	for i := range 3 * sessions {
		session := fmt.Sprintf("user-%d", i%sessions)
		r := h.do("POST", "/v1/completions", fmt.Sprintf(`{"model":"m","prompt":"question %d"}`, i), "x-session-id", session)
		if seen[session] == nil {
			seen[session] = map[string]bool{}
		}
		seen[session][r.endpoint()] = true
		r.filter.OnDestroy(api.Normal)
	}
	used := map[string]bool{}
	for session, eps := range seen {
		if len(eps) != 1 {
			t.Errorf("session %s went to %d endpoints, want it pinned to one", session, len(eps))
		}
		for ep := range eps {
			used[ep] = true
		}
	}
	if len(used) != 2 {
		t.Errorf("%d sessions all went to %v: sessions must spread over the pool", sessions, used)
	}
}
