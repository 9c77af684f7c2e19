// Command benche2e is the ABI host load benchmark (make bench-e2e): it sends
// OpenAI chat requests of several body sizes through envoyhost running the
// real inflow.so, and through the same host running a trivial pass-through Go
// filter, against a local fast backend, and reports requests/s and latency
// percentiles side by side so the cost of Inflow itself is visible.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inflow-gateway/inflow/e2e/harness"
)

const sectionTitle = "## ABI host load benchmark"

type result struct {
	setup     string
	size      int
	requests  int
	errors    int64
	rps       float64
	p50, p99  time.Duration
	rssBefore string
	rssAfter  string
	cpuPerReq time.Duration // host CPU time per request
}

func main() {
	out := flag.String("out", "", "markdown file whose \""+sectionTitle+"\" section is replaced with the results")
	duration := flag.Duration("duration", 5*time.Second, "measured time per cell and round")
	rounds := flag.Int("rounds", 3, "rounds per cell; the table shows the median round (by req/s)")
	latClients := flag.Int("latency-clients", 1, "clients of the second, unloaded latency table (0: skip it)")
	latDuration := flag.Duration("latency-duration", 3*time.Second, "measured time per cell and round of the latency table")
	warmup := flag.Duration("warmup", time.Second, "unmeasured warm-up per cell")
	clients := flag.Int("clients", 8, "concurrent keep-alive clients")
	workers := flag.Int("concurrency", 2, "envoyhost --concurrency")
	soak := flag.Duration("soak", 30*time.Second, "after the table, load the inflow host this long (4 KiB bodies) sampling its RSS")
	flag.Parse()
	log.SetFlags(0)

	ctx := context.Background()
	if err := harness.Build(ctx); err != nil {
		log.Fatal(err)
	}
	backend, err := harness.StartBackend("bench")
	if err != nil {
		log.Fatal(err)
	}
	backend.NoRecord = true
	defer backend.Close()

	sizes := []int{1 << 10, 4 << 10, 64 << 10}
	// Both hosts are driven over xDS as Envoy is: the pass-through one by
	// hand-built resources (its filter inline, a STATIC cluster of the
	// backend), the Inflow one by the real control plane (the filter config
	// over ECDS, the pool an EDS cluster with OverrideHost).
	dir, err := os.MkdirTemp("", "benche2e")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	inflowConfig := map[string]any{
		"listeners": []any{map[string]any{"name": "public", "address": "127.0.0.1", "port": 10000}},
		"models": []any{map[string]any{"name": "llama", "pool": "p1",
			"rewrite": []any{map[string]any{"model": "llama-3-8b", "weight": 1}}}},
		"pools": []any{map[string]any{"name": "p1", "endpoints": []string{backend.Addr}}},
	}
	setups := []struct {
		name  string
		start func() (*harness.Host, error)
	}{
		{"direct (no host)", nil},
		{"host + passthrough.so", func() (*harness.Host, error) {
			return harness.StartPassthroughHost(ctx, harness.PassthroughOptions{Upstreams: []string{backend.Addr}, Concurrency: *workers})
		}},
		{"host + inflow.so", func() (*harness.Host, error) {
			return harness.StartInflowHost(ctx, dir, inflowConfig, harness.XDSHostOptions{Concurrency: *workers})
		}},
	}
	// Start every host first, then run the setups one after the other for
	// each size: on a shared machine, load drifts, and interleaving keeps the
	// rows of one size comparable.
	bases := make([]string, len(setups))
	hosts := make([]*harness.Host, len(setups))
	for i, s := range setups {
		bases[i] = "http://" + backend.Addr
		if s.start == nil {
			continue
		}
		h, err := s.start()
		if err != nil {
			log.Fatal(err)
		}
		defer h.Close()
		hosts[i], bases[i] = h, "http://"+h.Addr
	}
	loadBefore := harness.LoadAverage()
	names := make([]string, len(setups))
	for i, s := range setups {
		names[i] = s.name
	}
	m := matrix{names: names, bases: bases, hosts: hosts, sizes: sizes, rounds: *rounds, warmup: *warmup}
	results := m.measure(*clients, *duration)
	var unloaded []result
	if *latClients > 0 {
		unloaded = m.measure(*latClients, *latDuration)
	}
	load := fmt.Sprintf("load average before %s, after %s", loadBefore, harness.LoadAverage())
	var soakLines []string
	if inflow := hosts[len(hosts)-1]; *soak > 0 && inflow != nil {
		soakLines = soakRun(bases[len(bases)-1], inflow, *clients, *soak)
	}
	section := render(results, *clients, *workers, *duration, *rounds, load) +
		renderUnloaded(unloaded, *latClients, *latDuration) + renderSoak(soakLines, *soak)
	fmt.Print(section)
	if *out != "" {
		if err := harness.ReplaceSection(*out, sectionTitle, section); err != nil {
			log.Fatal(err)
		}
	}
}

// matrix runs every setup for every body size, interleaving the setups of a
// size round by round.
type matrix struct {
	names  []string
	bases  []string
	hosts  []*harness.Host
	sizes  []int
	rounds int
	warmup time.Duration
}

func (m matrix) measure(clients int, duration time.Duration) []result {
	var results []result
	for _, size := range m.sizes {
		perSetup := make([][]result, len(m.names))
		for range m.rounds {
			for i, name := range m.names {
				r := run(m.bases[i], size, clients, m.warmup, duration, m.hosts[i])
				r.setup = name
				perSetup[i] = append(perSetup[i], r)
				log.Printf("%2d clients %-22s %6d B  %8.0f req/s  p50 %-9v p99 %-9v errors %d  host CPU/req %v  rss %s -> %s",
					clients, r.setup, r.size, r.rps, r.p50, r.p99, r.errors, r.cpuPerReq, r.rssBefore, r.rssAfter)
				if h := m.hosts[i]; h != nil {
					if exited, err := h.Exited(); exited {
						log.Fatalf("envoyhost died during the benchmark: %v\n%s", err, h.Stderr())
					}
				}
			}
		}
		for _, rs := range perSetup {
			results = append(results, median(rs))
		}
	}
	return results
}

func renderUnloaded(results []result, clients int, duration time.Duration) string {
	if len(results) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nUnloaded per-request latency: the same matrix with %d client(s), %v per round, so "+
		"the numbers are the time one request spends in the host and the filter rather than queueing.\n\n",
		clients, duration)
	b.WriteString("| setup | body | req/s | p50 | p99 | added p50 vs direct | host CPU / request |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	var direct time.Duration
	for _, r := range results {
		added, cpu := "-", "-"
		if r.cpuPerReq == 0 {
			direct = r.p50
		} else {
			added = fmtDur(r.p50 - direct)
			cpu = fmt.Sprintf("%.0f µs", float64(r.cpuPerReq)/float64(time.Microsecond))
		}
		fmt.Fprintf(&b, "| %s | %d KiB | %.0f | %s | %s | %s | %s |\n", r.setup, r.size>>10, r.rps, fmtDur(r.p50),
			fmtDur(r.p99), added, cpu)
	}
	return b.String()
}

// median returns the median round by req/s, with the median host CPU per
// request of all rounds and the RSS of the first and last round.
func median(rs []result) result {
	byRPS := slices.Clone(rs)
	slices.SortFunc(byRPS, func(a, b result) int { return cmp.Compare(a.rps, b.rps) })
	m := byRPS[len(byRPS)/2]
	cpus := make([]time.Duration, len(rs))
	for i, r := range rs {
		cpus[i] = r.cpuPerReq
	}
	slices.Sort(cpus)
	m.cpuPerReq = cpus[len(cpus)/2]
	m.rssBefore, m.rssAfter = rs[0].rssBefore, rs[len(rs)-1].rssAfter
	for _, r := range rs {
		if r.errors > m.errors {
			m.errors = r.errors
		}
	}
	return m
}

// chatBody is an OpenAI chat request of exactly size bytes.
func chatBody(size int) []byte {
	head, tail := `{"model":"llama","messages":[{"role":"user","content":"`, `"}]}`
	return []byte(head + strings.Repeat("a", size-len(head)-len(tail)) + tail)
}

func rss(h *harness.Host) string {
	if h == nil {
		return "-"
	}
	s, err := h.Stats(context.Background())
	if err != nil {
		return "?"
	}
	n, _ := strconv.ParseInt(s["envoyhost.rss_bytes"], 10, 64)
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func run(base string, size, clients int, warmup, duration time.Duration, h *harness.Host) result {
	body := chatBody(size)
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	res := result{size: size, rssBefore: rss(h)}
	var cpu0 time.Duration
	if h != nil {
		cpu0 = h.CPUTime()
	}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      atomic.Int64
		wg        sync.WaitGroup
	)
	start := time.Now()
	measureFrom, stop := start.Add(warmup), start.Add(warmup+duration)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			for {
				t0 := time.Now()
				if t0.After(stop) {
					break
				}
				err := harness.PostJSON(c, base+"/v1/chat/completions", body)
				if t0.After(measureFrom) {
					if err != nil {
						errs.Add(1)
					} else {
						local = append(local, time.Since(t0))
					}
				}
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	var total int
	mu.Lock()
	total = len(latencies)
	mu.Unlock()
	if h != nil && total > 0 {
		// includes warm-up requests: count them too, approximately, by
		// scaling to the whole run time
		elapsed := time.Since(start)
		all := float64(total) * float64(elapsed) / float64(duration)
		res.cpuPerReq = time.Duration(float64(h.CPUTime()-cpu0) / all)
	}
	slices.Sort(latencies)
	res.requests = len(latencies)
	res.errors = errs.Load()
	res.rps = float64(len(latencies)) / duration.Seconds()
	if n := len(latencies); n > 0 {
		res.p50 = latencies[n/2]
		res.p99 = latencies[n*99/100]
	}
	res.rssAfter = rss(h)
	return res
}

func render(results []result, clients, workers int, duration time.Duration, rounds int, load string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", sectionTitle)
	fmt.Fprintf(&b, "Command: `make bench-e2e` (`go run ./e2e/cmd/benche2e -out docs/benchmarks.md`).\n\n")
	fmt.Fprintf(&b, "envoyhost (the C program playing Envoy v1.39.0's side of the golang filter ABI, see "+
		"e2e/envoyhost/README.md) with `--concurrency %d`, driven over xDS (pass-through: hand-built resources, "+
		"the filter inline, a STATIC cluster of the backend; Inflow: the real control plane, the filter config "+
		"over ECDS, the pool an EDS cluster with OverrideHost), %d keep-alive clients in the same process as a Go "+
		"fake backend that answers a fixed chat completion, POST /v1/chat/completions with a JSON body of "+
		"the given size; each row is the median of %d rounds of %v (after a warm-up each), the setups of a "+
		"size interleaved, errors the worst round. "+
		"Machine: %d CPUs shared by the client, "+
		"the backend and the host (%s/%s, %s), so absolute numbers are a lower bound; compare rows of the same size (%s).\n\n",
		workers, clients, rounds, duration, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), load)
	b.WriteString("| setup | body | req/s | p50 | p99 | errors | host CPU / request | host RSS before -> after |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range results {
		cpu := "-"
		if r.cpuPerReq > 0 {
			cpu = fmt.Sprintf("%.0f µs", float64(r.cpuPerReq)/float64(time.Microsecond))
		}
		fmt.Fprintf(&b, "| %s | %d KiB | %.0f | %s | %s | %d | %s | %s -> %s |\n", r.setup, r.size>>10, r.rps,
			fmtDur(r.p50), fmtDur(r.p99), r.errors, cpu, r.rssBefore, r.rssAfter)
	}
	b.WriteString("\nInflow's own cost per request is the difference between the `inflow.so` and the " +
		"`passthrough.so` rows (same host, same ABI crossings; Inflow additionally buffers the body " +
		"(StopAndBuffer), parses it, rewrites `model`, picks an endpoint and sets headers and metadata). " +
		"`host CPU / request` is the host process's CPU time (the C host plus the Go runtime inside the .so) " +
		"divided by the requests it served (it includes the Go runtime's thread wake-ups, so it is high at low " +
		"load). A `perf` profile " +
		"of the pass-through case shows no hot spot in the host's own code: about a fifth of the samples are " +
		"kernel context switches (worker threads, Go runtime threads woken by `sysmon` handing off the P " +
		"after each cgo callback), the rest spread over kernel TCP, libevent, malloc and the Go runtime.\n")
	return b.String()
}

const soakStep = 5 * time.Second

// soakRun keeps the inflow host under load and samples what would grow if
// requests leaked: RSS, and host request objects Go has not finalized yet.
func soakRun(base string, h *harness.Host, clients int, total time.Duration) []string {
	var lines []string
	for elapsed := time.Duration(0); elapsed < total; elapsed += soakStep {
		r := run(base, 4<<10, clients, 0, soakStep, h)
		s, _ := h.Stats(context.Background())
		line := fmt.Sprintf("| %v | %.0f | %s | %s | %s |", elapsed+soakStep, r.rps, r.rssAfter,
			s["envoyhost.live_requests"], s["envoyhost.finalized_requests"])
		log.Print(line)
		lines = append(lines, line)
	}
	return lines
}

func renderSoak(lines []string, total time.Duration) string {
	if len(lines) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nSoak: `host + inflow.so`, 4 KiB bodies, %v of continuous load right after the table. "+
		"Request objects are freed by Go's GC finalizers (`envoyGoFilterHttpFinalize`), so `live` "+
		"(allocated, not yet finalized) rises and falls with GC cycles instead of growing.\n\n", total)
	b.WriteString("| time | req/s | host RSS | live requests | finalized |\n|---:|---:|---:|---:|---:|\n")
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}
