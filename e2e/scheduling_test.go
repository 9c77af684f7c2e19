package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
)

// startSims starts n vLLM simulators with fast timings for the test.
func startSims(t *testing.T, n int) *sim.Cluster {
	t.Helper()
	c, err := sim.StartCluster(testContext(t), n, sim.Options{
		Model: "llama", TTFTBase: time.Millisecond, PrefillPerToken: time.Microsecond, ITL: time.Microsecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func schedulingHost(t *testing.T, addrs []string) *harness.Host {
	t.Helper()
	return startHost(t, harness.HostOptions{PluginName: "inflow", Config: map[string]any{
		"models": []map[string]any{{"name": "llama", "pool": "sims"}},
		"pools": []map[string]any{{"name": "sims", "endpoints": addrs,
			"scheduler": map[string]any{"scrape_interval": "20ms", "staleness": "1s"}}},
		"objectives": map[string]int{"batch": -1},
	}})
}

// waitFor polls the host's /stats until cond holds (the filter exports
// pool stats once a second).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in time", what)
		}
		time.Sleep(50 * time.Millisecond) // polling a once-a-second export, with a deadline
	}
}

func statIs(t *testing.T, h *harness.Host, name string, cond func(int64) bool) func() bool {
	return func() bool {
		v, ok := optionalStat(t, h, name)
		return ok && cond(v)
	}
}

func optionalStat(t *testing.T, h *harness.Host, name string) (int64, bool) {
	s, err := h.Stats(testContext(t))
	if err != nil {
		return 0, false
	}
	if _, ok := s[name]; !ok {
		return 0, false
	}
	return stat(t, h, name), true
}

func statKey(addr string) string { return strings.NewReplacer(".", "_", ":", "_").Replace(addr) }

// TestPoolStatsThroughTheRealFilter: the filter scrapes the simulators,
// picks, and its per-endpoint pick counters and freshness gauge reach
// Envoy's stats through the Go filter metrics API.
func TestPoolStatsThroughTheRealFilter(t *testing.T) {
	sims := startSims(t, 2)
	h := schedulingHost(t, sims.Addrs())
	waitFor(t, "fresh metrics for every simulator", statIs(t, h, "inflow.pool.sims.stale_endpoints", func(v int64) bool { return v == 0 }))
	c := client(h)
	const n = 6
	for range n {
		if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hello")); err != nil {
			t.Fatal(err)
		}
	}
	picks := func(addr string) int64 {
		v, _ := optionalStat(t, h, "inflow.pool.sims.endpoint."+statKey(addr)+".picks_total")
		return v
	}
	waitFor(t, "picks exported", func() bool { return picks(sims.Addrs()[0])+picks(sims.Addrs()[1]) == n })
	var served uint64
	for _, s := range sims.Servers {
		served += s.Stats().Finished["stop"] + s.Stats().Finished["length"]
	}
	if served != n {
		t.Errorf("simulators finished %d requests, want %d", served, n)
	}
	if v := stat(t, h, "inflow.pool.sims.fail_opens_total"); v != 0 {
		t.Errorf("fail-opens = %d with fresh metrics", v)
	}
}

// TestSaturatedPoolShedsOnlySheddableRequests drives the saturation path
// with the simulators' metric overrides.
func TestSaturatedPoolShedsOnlySheddableRequests(t *testing.T) {
	sims := startSims(t, 2)
	waiting := 50
	for _, s := range sims.Servers {
		s.SetMetricsOverride(sim.MetricsOverride{NumRequestsWaiting: &waiting})
	}
	h := schedulingHost(t, sims.Addrs())
	waitFor(t, "fresh metrics for every simulator", statIs(t, h, "inflow.pool.sims.stale_endpoints", func(v int64) bool { return v == 0 }))
	c := client(h)
	// The scrapes that see the override may lag the freshness gauge by one
	// interval; retry until the first shed, with a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi"),
			option.WithHeader("x-gateway-inference-objective", "batch"))
		if err != nil {
			if e := apiError(t, err, http.StatusTooManyRequests); e.Code != "pool_saturated" {
				t.Fatalf("429 code %q", e.Code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a sheddable request was never shed while every server reports 50 waiting")
		}
	}
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi")); err != nil {
		t.Fatalf("a request without a sheddable objective must still be served: %v", err)
	}
	waitFor(t, "sheds exported", statIs(t, h, "inflow.pool.sims.sheds_total", func(v int64) bool { return v >= 1 }))
	if v := stat(t, h, "inflow_rejected_429_total"); v < 1 {
		t.Errorf("inflow_rejected_429_total = %d", v)
	}
}
