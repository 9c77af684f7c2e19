package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
)

// The feedback scenarios: Inflow variants through the ABI host with
// inflow.so, each on a fresh cluster, the same seeded workload.

// slowDelay is how much later the slow server answers (its TTFT).
const slowDelay = 500 * time.Millisecond

type scenario struct {
	// name is the -scenario value and the docs section marker.
	name   string
	title  string
	stream bool
	// slow: server 0 answers slowDelay later than the others (a "slow"
	// fault: its metrics stay honest, it just takes longer).
	slow     bool
	variants []variant
}

type variant struct {
	label    string
	rate     float64        // requests/s; 0: the -rate flag
	settings map[string]any // pool scheduler settings
	// scrapeInterval is the configured one, for the scrapes/s column.
	scrapeInterval time.Duration
}

var noFeedback = map[string]any{"weights": map[string]any{"latency": 0}}

var feedbackScenarios = []scenario{
	{
		name:   "bench-sched-slow",
		title:  "one server 500 ms slower (TTFT) than the other five, its metrics honest",
		stream: true, slow: true,
		// At 22 requests/s the pool needs the slow server's capacity (the
		// other five serve about 20/s); at 12/s they can take it all.
		variants: []variant{
			{"22 req/s, without response feedback (latency weight 0)", 0, noFeedback, 50 * time.Millisecond},
			{"22 req/s, with response feedback (default)", 0, map[string]any{}, 50 * time.Millisecond},
			{"12 req/s, without response feedback", 12, noFeedback, 50 * time.Millisecond},
			{"12 req/s, with response feedback", 12, map[string]any{}, 50 * time.Millisecond},
		},
	},
	{
		name:   "bench-sched-loadreports",
		title:  "non-streaming requests (vLLM attaches load reports to those only), scrape interval and load reports",
		stream: false,
		variants: []variant{
			{"scrape every 50 ms, no load reports", 0, map[string]any{"feedback": map[string]any{"load_reports": false}}, 50 * time.Millisecond},
			{"scrape every 500 ms, no load reports", 0, map[string]any{"scrape_interval": "500ms", "staleness": "2s", "feedback": map[string]any{"load_reports": false}}, 500 * time.Millisecond},
			{"scrape every 500 ms + load reports", 0, map[string]any{"scrape_interval": "500ms", "staleness": "2s"}, 500 * time.Millisecond},
		},
	},
}

type scenarioResult struct {
	label     string
	ttft      []time.Duration
	errors    int
	elapsed   time.Duration
	served    []uint64 // requests finished per server
	scrapesPS float64
}

// runScenario runs every variant of sc.
func runScenario(ctx context.Context, o options, sc scenario) ([]scenarioResult, error) {
	var out []scenarioResult
	for _, v := range sc.variants {
		r, err := runVariant(ctx, o, sc, v)
		if err != nil {
			return nil, fmt.Errorf("%s / %s: %w", sc.name, v.label, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func runVariant(ctx context.Context, o options, sc scenario, v variant) (scenarioResult, error) {
	res := scenarioResult{label: v.label, scrapesPS: float64(o.servers) / v.scrapeInterval.Seconds()}
	cluster, err := sim.StartCluster(ctx, o.servers, simOptions())
	if err != nil {
		return res, err
	}
	defer cluster.Close()
	if sc.slow {
		if err := cluster.Servers[0].SetFault(sim.Fault{Mode: sim.FaultSlow, Delay: slowDelay}); err != nil {
			return res, err
		}
	}
	via, err := startHostWith(ctx, cluster.Addrs(), v.settings)
	if err != nil {
		return res, err
	}
	defer via.close()
	if err := waitHostFresh(ctx, via.host); err != nil {
		return res, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}, Timeout: 2 * time.Minute}
	w := newWorkload(o.seed)
	w.stream = sc.stream
	rate := o.rate
	if v.rate > 0 {
		rate = v.rate
	}
	var mu sync.Mutex
	res.elapsed = drive(o.seed, rate, o.duration, func() {
		c, body, _ := w.next()
		defer w.done(c)
		req, err := http.NewRequest(http.MethodPost, via.url(), bytes.NewReader(body))
		var ttft time.Duration
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			ttft, err = measure(client, req, sc.stream)
		}
		mu.Lock()
		defer mu.Unlock()
		if res.errors += count(err); err == nil {
			res.ttft = append(res.ttft, ttft)
		}
	})
	for _, s := range cluster.Servers {
		var n uint64
		for _, c := range s.Stats().Finished {
			n += c
		}
		res.served = append(res.served, n)
	}
	return res, nil
}

func renderScenario(o options, sc scenario, rs []scenarioResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d simulated vLLM servers as in the table above, %s; %.0f requests/s unless the row says otherwise (Poisson) for %s per variant, seed %d, through the ABI host and inflow.so.\n\n",
		o.servers, sc.title, o.rate, o.duration, o.seed)
	what := "TTFT"
	if !sc.stream {
		what = "time to response"
	}
	if sc.slow {
		fmt.Fprintf(&b, "| variant | slow server's share | %s p50 | %s p90 | %s p99 | requests/s | errors |\n|---|---:|---:|---:|---:|---:|---:|\n", what, what, what)
	} else {
		fmt.Fprintf(&b, "| variant | scrapes/s | %s p50 | %s p90 | %s p99 | p90 vs first row | requests/s | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n", what, what, what)
	}
	for _, r := range rs {
		p50, p90, p99 := ms(pct(r.ttft, 0.5)), ms(pct(r.ttft, 0.9)), ms(pct(r.ttft, 0.99))
		rps := float64(len(r.ttft)) / r.elapsed.Seconds()
		if sc.slow {
			var total uint64
			for _, n := range r.served {
				total += n
			}
			share := 0.0
			if total > 0 {
				share = 100 * float64(r.served[0]) / float64(total)
			}
			fmt.Fprintf(&b, "| %s | %.1f%% | %s | %s | %s | %.1f | %d |\n", r.label, share, p50, p90, p99, rps, r.errors)
			continue
		}
		rel := 100 * (float64(pct(r.ttft, 0.9))/float64(pct(rs[0].ttft, 0.9)) - 1)
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %+.0f%% | %.1f | %d |\n", r.label, r.scrapesPS, p50, p90, p99, rel, rps, r.errors)
	}
	return b.String()
}
