package envoyfilter

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// discardLog keeps the churn test's own logging out of its heap numbers.
type discardLog struct{}

func (discardLog) Log(api.LogType, string) {}
func (discardLog) LogLevel() api.LogType   { return api.Error }

// churnConfig is pool "churn" with the base endpoints plus endpoints
// [from, from+n) of churnAddr. The hour-long scrape interval makes each new
// endpoint's scraper try once (the addresses refuse connections) and then
// wait: the test feeds metrics itself.
func churnConfig(base, from, n int) string {
	eps := make([]string, 0, base+n)
	for i := range base {
		eps = append(eps, churnAddr(i))
	}
	for i := from; i < from+n; i++ {
		eps = append(eps, churnAddr(base+i))
	}
	list, err := json.Marshal(eps)
	if err != nil {
		panic(err)
	}
	return `{"models":[{"name":"m","pool":"churn"}],
	  "pools":[{"name":"churn","endpoints":` + string(list) + `,
	            "scheduler":{"scrape_interval":"1h","staleness":"1h"}}]}`
}

// churnAddr is the i-th distinct loopback address (127.0.0.0/8 is all
// local on Linux; nothing listens on port 9).
func churnAddr(i int) string { return fmt.Sprintf("127.%d.%d.%d:9", 1+i>>16, i>>8&0xff, i&0xff) }

// liveHeap is the heap in use after full collections (two, so sync.Pool
// victims are gone too).
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// churner runs configs the way Envoy swaps them: parse the new one (with
// its own stats scope), serve requests with it, export its stats, then
// destroy the old one.
type churner struct {
	t   *testing.T
	cur *harness
}

func (c *churner) update(js string, requests int) {
	c.t.Helper()
	next := newHarness(c.t, js)
	// Fresh metrics for every endpoint, so picks go through the scorers
	// and record prompts in the prefix index, like a scraped pool.
	now := time.Now()
	for i, ep := range next.endpoints("m") {
		ep.SetMetrics(&pool.Metrics{Waiting: float64(i % 3), Running: 1, KVCacheUsage: 0.1, ScrapedAt: now})
	}
	for i := range requests {
		prompt := strings.Repeat(fmt.Sprintf("conversation %d. ", i), 60)
		r := next.do("POST", "/v1/completions", `{"model":"m","prompt":"`+prompt+`"}`)
		if r.reply != nil {
			c.t.Fatalf("request %d: %d %s", i, r.reply.status, r.reply.body)
		}
		r.filter.OnDestroy(api.Normal)
	}
	next.cfg.exporter.export(time.Now())
	if c.cur != nil {
		c.cur.cfg.Destroy()
	}
	c.cur = next
}

// TestEndpointChurnLeavesNothingBehind adds and removes 10,000 distinct
// endpoints through 100 config updates (a rolling replacement of 100 pods
// at a time beside 10 that stay) and checks that the filter's heap and its
// per-endpoint state return to where they started.
func TestEndpointChurnLeavesNothingBehind(t *testing.T) {
	const base, perUpdate, updates, requests = 10, 100, 100, 20
	api.SetCommonCAPI(discardLog{})
	defer api.SetCommonCAPI(testLog)

	c := &churner{t: t}
	// One full cycle first, so one-time allocations (the scrape client,
	// pooled buffers, map buckets) are in the baseline.
	c.update(churnConfig(base, updates*perUpdate, perUpdate), requests)
	c.update(churnConfig(base, 0, 0), requests)
	ix := c.cur.cfg.router.Schedulers()["churn"].Prefix()
	pools0, endpoints0 := pools.Retained()
	goroutines0 := runtime.NumGoroutine()
	heap0 := liveHeap()

	peakSlots := 0
	for u := range updates {
		c.update(churnConfig(base, u*perUpdate, perUpdate), requests)
		peakSlots = max(peakSlots, ix.Slots())
	}
	if _, eps := pools.Retained(); eps != endpoints0+perUpdate {
		t.Errorf("during churn the filter retains %d endpoints, want %d", eps, endpoints0+perUpdate)
	}
	c.update(churnConfig(base, 0, 0), requests) // back to the starting config
	heap1 := liveHeap()

	// The per-endpoint maps, directly: the pool manager's members, the
	// live config's stats, the prefix index.
	if p, eps := pools.Retained(); p != pools0 || eps != endpoints0 {
		t.Errorf("after churn the filter retains %d pools, %d endpoints; at the start %d, %d", p, eps, pools0, endpoints0)
	}
	if n := len(c.cur.cfg.exporter.stats["churn"].picks); n != base {
		t.Errorf("the live config keeps pick stats for %d endpoints, want its %d", n, base)
	}
	// Slots are reused: the index is as wide as the most endpoints held at
	// once (two configs during an update), not as the endpoints ever seen.
	if peakSlots > base+2*perUpdate || ix.Slots() > peakSlots {
		t.Errorf("prefix index has %d slots (peak %d) after %d distinct endpoints", ix.Slots(), peakSlots, updates*perUpdate)
	}
	held := 0
	for _, ep := range c.cur.endpoints("m") {
		if ep.Slot() < 0 {
			t.Errorf("%s lost its prefix slot", ep.Addr)
		}
		held++
	}
	if held != base {
		t.Errorf("live config has %d endpoints, want %d", held, base)
	}
	// Scrapers of removed endpoints have stopped.
	poll.Eventually(t, "scraper goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines0 })

	// 10,000 retained endpoints would hold several MB (each with its
	// metrics, counters and map entries); allow a little for runtime noise.
	const slack = 512 << 10
	growth := int64(heap1) - int64(heap0)
	t.Logf("live heap %d KiB -> %d KiB after %d distinct endpoints (%+d KiB)", heap0>>10, heap1>>10, updates*perUpdate, growth>>10)
	if growth > slack {
		t.Errorf("live heap grew by %d KiB over %d endpoint adds and removes, want at most %d KiB", growth>>10, updates*perUpdate, slack>>10)
	}
	c.cur.cfg.Destroy()
}
