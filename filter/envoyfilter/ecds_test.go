package envoyfilter

import (
	"testing"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// Over ECDS, every edit is a full re-parse: Envoy parses the new resource
// (with config callbacks, as for a listener), serves new streams with it,
// and destroys the old config once its last stream ended. What belongs to
// the endpoints (in-flight counts, metrics, scrapers) must carry over for
// every endpoint both configs name.
func TestEndpointStateSurvivesAnECDSSwap(t *testing.T) {
	a, b, c := startModelServer(t, 0, 0.1), startModelServer(t, 4, 0.7), startModelServer(t, 0, 0.1)
	old := newHarness(t, schedulingConfig("ecds-swap", a.addr(), b.addr()))
	waitForMetrics(t, old, "m", func(m *pool.Metrics) bool { return m.Waiting == 0 || m.Waiting == 4 })
	inFlight := old.do("POST", "/v1/completions", `{"model":"m","prompt":"x"}`)
	if inFlight.endpoint() != a.addr() {
		t.Fatalf("first request went to %s, want the idle %s", inFlight.endpoint(), a.addr())
	}

	// The edit: b leaves the pool, c joins, a stays.
	next := newHarness(t, schedulingConfig("ecds-swap", a.addr(), c.addr()))
	t.Cleanup(next.cfg.Destroy)
	m, err := next.cfg.router.Lookup([]byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	epA := m.Scheduler.Pool().Endpoints[0]
	if epA.Addr != a.addr() || epA.InFlight() != 1 || epA.Metrics() == nil {
		t.Fatalf("endpoint %s after the swap: in flight %d, metrics %v; want the old stream's 1 and its metrics",
			epA.Addr, epA.InFlight(), epA.Metrics())
	}
	// The new config sees a's stream: the next request goes to c once c
	// has been scraped.
	waitForMetrics(t, next, "m", func(*pool.Metrics) bool { return true })
	r := next.do("POST", "/v1/completions", `{"model":"m","prompt":"y"}`)
	if r.endpoint() != c.addr() {
		t.Errorf("request under the new config went to %s, want %s (a still has a stream)", r.endpoint(), c.addr())
	}
	r.filter.OnDestroy(api.Normal)

	// The old stream ends, then Envoy drops the old config.
	inFlight.filter.OnDestroy(api.Normal)
	old.cfg.Destroy()
	if epA.InFlight() != 0 {
		t.Errorf("a in flight %d after its stream ended", epA.InFlight())
	}
	// a is still scraped for the new config.
	a.set(7, 0.2)
	poll.Eventually(t, "a's metrics to keep updating after the old config was destroyed", func() bool {
		return epA.Metrics().Waiting == 7
	})
}
