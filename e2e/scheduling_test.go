package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
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
	return startInflowHost(t, map[string]any{
		"models": []map[string]any{{"name": "llama", "pool": "sims"}},
		"pools": []map[string]any{{"name": "sims", "endpoints": addrs,
			"scheduler": map[string]any{"scrape_interval": "20ms", "staleness": "1s"}}},
		"objectives": map[string]int{"batch": -1},
	})
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

// TestPoolStatsThroughTheRealFilter: the filter scrapes the simulators,
// picks, and its per-endpoint pick counters and freshness gauge reach
// Envoy's stats through the Go filter metrics API.
func TestPoolStatsThroughTheRealFilter(t *testing.T) {
	sims := startSims(t, 2)
	h := schedulingHost(t, sims.Addrs())
	poll.Eventually(t, "fresh metrics for every simulator", statIs(t, h, protocol.PoolStat("sims", protocol.PoolStatStaleEndpoints), func(v int64) bool { return v == 0 }))
	c := client(h)
	const n = 6
	for range n {
		if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hello")); err != nil {
			t.Fatal(err)
		}
	}
	picks := func(addr string) int64 {
		v, _ := optionalStat(t, h, protocol.EndpointStat("sims", addr, protocol.EndpointStatPicks))
		return v
	}
	poll.Eventually(t, "picks exported", func() bool { return picks(sims.Addrs()[0])+picks(sims.Addrs()[1]) == n })
	var served uint64
	for _, s := range sims.Servers {
		served += s.Stats().Finished["stop"] + s.Stats().Finished["length"]
	}
	if served != n {
		t.Errorf("simulators finished %d requests, want %d", served, n)
	}
	if v := stat(t, h, protocol.PoolStat("sims", protocol.PoolStatFailOpens)); v != 0 {
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
	poll.Eventually(t, "fresh metrics for every simulator", statIs(t, h, protocol.PoolStat("sims", protocol.PoolStatStaleEndpoints), func(v int64) bool { return v == 0 }))
	c := client(h)
	// The scrapes that see the override may lag the freshness gauge by one
	// interval; retry until the first shed.
	var shed error
	poll.Eventually(t, "a sheddable request shed while every server reports 50 waiting", func() bool {
		_, shed = c.Chat.Completions.New(testContext(t), chatParams("llama", "hi"),
			option.WithHeader(protocol.HeaderObjective, "batch"))
		return shed != nil
	})
	if e := apiError(t, shed, http.StatusTooManyRequests); e.Code != "pool_saturated" {
		t.Fatalf("429 code %q", e.Code)
	}
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi")); err != nil {
		t.Fatalf("a request without a sheddable objective must still be served: %v", err)
	}
	poll.Eventually(t, "sheds exported", statIs(t, h, protocol.PoolStat("sims", protocol.PoolStatSheds), func(v int64) bool { return v >= 1 }))
	if v := stat(t, h, protocol.StatRejected429); v < 1 {
		t.Errorf("%s = %d", protocol.StatRejected429, v)
	}
}
