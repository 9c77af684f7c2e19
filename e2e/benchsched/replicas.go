package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inflow-gateway/inflow/controlplane/local"
	"github.com/inflow-gateway/inflow/controlplane/relay"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// The replica scenario (issue 16): R Envoy replicas in front of the same
// six simulators, each a separate host process loading inflow.so and fed
// by one control plane over ADS, so each has its own filter state (pool
// manager, scrapers, prefix index, in-flight counts) as separate Envoy
// pods do; in one process they would share the .so's process-wide pool
// manager. A load balancer in front
// sends each request to the next replica in turn: per request, the L7 case,
// so consecutive turns of one conversation reach different replicas
// (per connection would keep a client's turns together and hide the
// problem).

// replicasSection is the -scenario name and docs section marker.
const replicasSection = "bench-sched-replicas"

// replicaCounts are the R of every design's rows.
var replicaCounts = []int{1, 2, 4}

type replicaDesign struct {
	label string
	// settings are the pool scheduler settings (nil: the defaults).
	settings map[string]any
	// relay: the replicas share state through a relay (filter config
	// shared_state.relay), run here in process as the control plane runs
	// it.
	relay bool
}

// replicaDesigns are the candidates side by side: today's filter, (a)
// replicas agreeing on placement without talking, (c) state shared off the
// request path through the control plane's relay. (b), reading the
// servers' own KV-cache events, needs a tokenizer on the request path; see
// docs/scheduling.md.
var replicaDesigns = []replicaDesign{
	{label: "each replica alone (before)"},
	{label: "(a) rendezvous placement, weight 2", settings: map[string]any{"weights": map[string]any{"placement": 2}}},
	{label: "(c) shared state through the relay (chosen)", relay: true},
}

type replicaResult struct {
	design        string
	replicas      int
	ttft          []time.Duration
	errors        int
	elapsed       time.Duration
	hits, queries uint64
	scrapesPerSec float64 // per server
}

// runReplicas runs every design at every replica count, each row on a
// fresh cluster (cold caches) with the same seeded workload.
func runReplicas(ctx context.Context, o options) ([]replicaResult, error) {
	var out []replicaResult
	for _, d := range replicaDesigns {
		for _, n := range replicaCounts {
			r, err := runReplicaRow(ctx, o, d, n)
			if err != nil {
				return nil, fmt.Errorf("%s, %d replicas: %w", d.label, n, err)
			}
			log.Printf("%s, %d replicas: TTFT p90 %v, hit rate %.1f%%, %.1f scrapes/server/s",
				d.label, n, pct(r.ttft, 0.9), 100*hitRate(r.hits, r.queries), r.scrapesPerSec)
			out = append(out, r)
		}
	}
	return out, nil
}

func runReplicaRow(ctx context.Context, o options, d replicaDesign, n int) (replicaResult, error) {
	res := replicaResult{design: d.label, replicas: n}
	cluster, err := sim.StartCluster(ctx, o.servers, simOptions())
	if err != nil {
		return res, err
	}
	defer cluster.Close()
	addrs := cluster.Addrs()
	cfg := inflowConfig(addrs, d.settings)
	if d.relay {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		relayAddr, err := startRelay(ctx)
		if err != nil {
			return res, err
		}
		cfg["shared_state"] = map[string]any{"relay": relayAddr}
	}
	hosts, stop, err := startReplicaHosts(ctx, cfg, n)
	defer stop()
	if err != nil {
		return res, err
	}
	for _, h := range hosts {
		if err := waitHostFresh(ctx, h); err != nil {
			return res, err
		}
		if d.relay {
			if err := waitHostGauge(ctx, h, protocol.PoolStatSharedConnected, 1); err != nil {
				return res, err
			}
		}
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}, Timeout: 2 * time.Minute}
	w := newWorkload(o.seed)
	var (
		mu   sync.Mutex
		next atomic.Uint64
	)
	scrapesBefore := clusterScrapes(cluster)
	res.elapsed = drive(o.seed, o.rate, o.duration, func() {
		c, body, _ := w.next()
		defer w.done(c)
		h := hosts[(next.Add(1)-1)%uint64(n)] // the load balancer: next replica, per request
		req, err := http.NewRequest(http.MethodPost, h.URL("/v1/chat/completions"), bytes.NewReader(body))
		var ttft time.Duration
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
			ttft, err = measure(client, req, true)
		}
		mu.Lock()
		defer mu.Unlock()
		if res.errors += count(err); err == nil {
			res.ttft = append(res.ttft, ttft)
		}
	})
	res.scrapesPerSec = float64(clusterScrapes(cluster)-scrapesBefore) / float64(o.servers) / res.elapsed.Seconds()
	for _, s := range cluster.Servers {
		st := s.Stats()
		res.hits += st.PrefixCacheHits
		res.queries += st.PrefixCacheQueries
	}
	return res, nil
}

// startReplicaHosts starts one control plane serving cfg and n hosts it
// drives over ADS, as n Envoy pods of one deployment; stop closes them.
func startReplicaHosts(ctx context.Context, cfg map[string]any, n int) (hosts []*harness.Host, stop func(), err error) {
	dir, err := os.MkdirTemp("", "benchsched-")
	if err != nil {
		return nil, func() {}, err
	}
	var cp *local.Server
	stop = func() {
		for _, h := range hosts {
			h.Close()
		}
		if cp != nil {
			_ = cp.Close()
		}
		_ = os.RemoveAll(dir)
	}
	text, err := json.Marshal(cfg) // JSON is YAML
	if err != nil {
		return nil, stop, err
	}
	path := filepath.Join(dir, "inflow.yaml")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		return nil, stop, err
	}
	if cp, err = local.Start(ctx, path, slog.New(slog.DiscardHandler)); err != nil {
		return nil, stop, err
	}
	for range n {
		h, err := harness.StartXDSHost(ctx, harness.XDSHostOptions{ControlPlane: cp.Addr, Listener: "public", Concurrency: 2})
		if err != nil {
			return hosts, stop, fmt.Errorf("start host (run make build-filter build-host): %w", err)
		}
		hosts = append(hosts, h)
	}
	return hosts, stop, nil
}

// startRelay serves a state relay on a loopback port until ctx ends.
func startRelay(ctx context.Context) (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = relay.Serve(ctx, lis, relay.New(nil)) }() // ends with ctx
	return lis.Addr().String(), nil
}

// waitHostGauge waits until the pool gauge stat of the filter in h reads
// want.
func waitHostGauge(ctx context.Context, h *harness.Host, stat string, want uint64) error {
	return poll.Until(ctx, 15*time.Second, "pool stat "+stat, func() bool {
		v, ok := hostStat(ctx, h, protocol.PoolStat("sim", stat))
		return ok && v == want
	})
}

func clusterScrapes(c *sim.Cluster) uint64 {
	var n uint64
	for _, s := range c.Servers {
		n += s.Stats().Scrapes
	}
	return n
}

func hitRate(hits, queries uint64) float64 {
	if queries == 0 {
		return 0
	}
	return float64(hits) / float64(queries)
}

func renderReplicas(o options, rs []replicaResult, scrapeCPU time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d simulated vLLM servers as in the table above, %.0f requests/s (Poisson) for %s per row, seed %d; R replicas, each a separate ABI host process with inflow.so and its own state, behind a per-request round-robin load balancer; every row on a fresh cluster. ",
		o.servers, o.rate, o.duration, o.seed)
	fmt.Fprintf(&b, "Serving one /metrics scrape costs a simulator %.0f µs of CPU (measured in this run, the scraping client's share included).\n\n", float64(scrapeCPU)/float64(time.Microsecond))
	b.WriteString("| design | replicas | TTFT p50 | TTFT p90 | TTFT p99 | p90 vs 1 replica | prefix-cache hit rate | vs 1 replica | scrapes per server per second | requests/s | errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var base replicaResult
	for _, r := range rs {
		if r.replicas == 1 {
			base = r
		}
		p90 := pct(r.ttft, 0.9)
		rel := 100 * (float64(p90)/float64(pct(base.ttft, 0.9)) - 1)
		hit, baseHit := 100*hitRate(r.hits, r.queries), 100*hitRate(base.hits, base.queries)
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %+.0f%% | %.1f%% | %+.1f points | %.1f | %.1f | %d |\n",
			r.design, r.replicas, ms(pct(r.ttft, 0.5)), ms(p90), ms(pct(r.ttft, 0.99)), rel, hit, hit-baseHit,
			r.scrapesPerSec, float64(len(r.ttft))/r.elapsed.Seconds(), r.errors)
	}
	return b.String()
}
