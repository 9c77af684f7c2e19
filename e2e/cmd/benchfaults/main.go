// Command benchfaults is the fault benchmark of issue 11 (make
// bench-faults): the same fault in both pool destination modes. Three vLLM
// simulators serve one pool behind the xDS-driven host (inflow.so, the real
// control plane); streaming chat completions arrive at a fixed rate (open
// loop: a request is sent on time whatever the others do); partway through,
// one simulator dies as a pod does (its listener and every connection
// closed at once) and stays in the pool's endpoint list, as it would until
// Kubernetes marks it not ready. A request fails if the client gets an
// error status or a stream that does not end with [DONE]. The table gives
// failed requests out of total per mode, split into those in flight at the
// kill and those sent after it.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

const sectionTitle = "## Endpoint faults: `make bench-faults`"

type options struct {
	rate   float64
	before time.Duration // load before the kill
	after  time.Duration // load after it
	runs   int
}

// workload is what the clients send.
type workload struct {
	name      string
	maxTokens int
	stream    bool
}

// The two ends of what a dying pod has in flight: streams of about 0.4 s
// (32 tokens at the simulator's 12 ms ITL: a few on every endpoint at any
// time), and one-token answers of about 45 ms (often none in flight on the
// victim when it dies, so the first request it fails is a new one).
var workloads = []workload{
	{"streams of 32 tokens", 32, true},
	{"1-token answers", 1, false},
}

func main() {
	var o options
	out := flag.String("out", "", "markdown file whose \""+sectionTitle+"\" section is replaced with the results")
	flag.Float64Var(&o.rate, "rate", 20, "requests per second")
	flag.DurationVar(&o.before, "before", 3*time.Second, "load before the kill")
	flag.DurationVar(&o.after, "after", 7*time.Second, "load after the kill")
	flag.IntVar(&o.runs, "runs", 5, "kills per mode (a fresh stack each)")
	flag.Parse()
	log.SetFlags(0)

	ctx := context.Background()
	if err := harness.Build(ctx); err != nil {
		log.Fatal(err)
	}
	loadBefore := harness.LoadAverage()
	var rows []row
	for _, w := range workloads {
		for _, mode := range []config.Destination{config.DestinationOverrideHost, config.DestinationOriginalDst} {
			total := row{workload: w.name, mode: string(mode)}
			for run := range o.runs {
				r, err := measure(ctx, o, w, mode)
				if err != nil {
					log.Fatalf("%s, %s, run %d: %v", w.name, mode, run+1, err)
				}
				log.Printf("run %d: %s", run+1, r.cells())
				total.add(r)
			}
			rows = append(rows, total)
		}
	}
	section := render(rows, o, fmt.Sprintf("load average %s before, %s after", loadBefore, harness.LoadAverage()))
	fmt.Print(section)
	if *out != "" {
		if err := harness.ReplaceSection(*out, sectionTitle, section); err != nil {
			log.Fatal(err)
		}
	}
}

// row is what one mode's runs add up to.
type row struct {
	workload, mode        string
	requests, failed      int
	failedInFlight        int // sent before the kill
	failedAfter           int // sent after it
	retries, connectFails int64
	lastFailure           time.Duration  // after the kill, worst run
	errors                map[string]int // what the failures were, by kind
	kills                 int
}

func (r *row) add(o row) {
	r.requests += o.requests
	r.failed += o.failed
	r.failedInFlight += o.failedInFlight
	r.failedAfter += o.failedAfter
	r.retries += o.retries
	r.connectFails += o.connectFails
	r.lastFailure = max(r.lastFailure, o.lastFailure)
	for k, n := range o.errors {
		if r.errors == nil {
			r.errors = map[string]int{}
		}
		r.errors[k] += n
	}
	r.kills += o.kills
}

func (r row) cells() string {
	last := "-"
	if r.failedAfter > 0 {
		last = fmt.Sprintf("%.0f ms", float64(r.lastFailure)/float64(time.Millisecond))
	}
	return fmt.Sprintf("| %s | %s | %d | %d | %d (%.2f %%) | %d | %d | %d | %d | %s |", r.workload, r.mode, r.kills, r.requests, r.failed,
		100*float64(r.failed)/float64(max(r.requests, 1)), r.failedInFlight, r.failedAfter, r.retries, r.connectFails, last)
}

// measure runs one kill in mode on a fresh stack.
func measure(ctx context.Context, o options, w workload, mode config.Destination) (row, error) {
	cluster, err := sim.StartCluster(ctx, 3, sim.Options{Model: "llama-3-8b"})
	if err != nil {
		return row{}, err
	}
	defer cluster.Close()
	dir, err := os.MkdirTemp("", "benchfaults")
	if err != nil {
		return row{}, err
	}
	defer os.RemoveAll(dir)
	h, err := harness.StartInflowHost(ctx, dir, map[string]any{
		"listeners": []any{map[string]any{"name": "public", "address": "127.0.0.1", "port": 10000}},
		"models":    []any{map[string]any{"name": "llama", "pool": "p1", "rewrite": []any{map[string]any{"model": "llama-3-8b"}}}},
		"pools":     []any{map[string]any{"name": "p1", "endpoints": cluster.Addrs(), "destination": mode}},
	}, harness.XDSHostOptions{})
	if err != nil {
		return row{}, err
	}
	defer h.Close()
	if err := poll.Until(ctx, poll.DefaultTimeout, "all endpoints scraped", func() bool {
		s, err := h.Stats(ctx)
		return err == nil && s[protocol.PoolStat("p1", protocol.PoolStatStaleEndpoints)] == "0"
	}); err != nil {
		return row{}, err
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second}
	type result struct {
		sent time.Time
		err  error
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	start := time.Now()
	kill := start.Add(o.before)
	end := kill.Add(o.after)
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.rate))
	defer tick.Stop()
	killed := false
	for i := 0; ; i++ {
		now := <-tick.C
		if now.After(end) {
			break
		}
		if !killed && now.After(kill) {
			// a pod dying: connections closed mid-stream, new ones refused
			if err := cluster.Servers[0].Close(); err != nil {
				return row{}, err
			}
			kill, killed = time.Now(), true
		}
		wg.Go(func() {
			sent := time.Now()
			err := chat(ctx, client, h.URL("/v1/chat/completions"), i, w)
			mu.Lock()
			results = append(results, result{sent, err})
			mu.Unlock()
		})
	}
	wg.Wait()

	r := row{workload: w.name, mode: string(mode), requests: len(results), kills: 1, errors: map[string]int{}}
	for _, res := range results {
		if res.err == nil {
			continue
		}
		r.failed++
		when := "in flight"
		if res.sent.Before(kill) {
			r.failedInFlight++
		} else {
			when = "after"
			r.failedAfter++
			r.lastFailure = max(r.lastFailure, res.sent.Sub(kill))
		}
		r.errors[when+": `"+res.err.Error()+"`"]++
	}
	stats, err := h.Stats(ctx)
	if err != nil {
		return row{}, err
	}
	r.retries, _ = strconv.ParseInt(stats["cluster.pool/p1.upstream_rq_retry"], 10, 64)
	r.connectFails, _ = strconv.ParseInt(stats["cluster.pool/p1.upstream_cx_connect_fail"], 10, 64)
	return r, nil
}

// chat sends chat completion i and reads it to the end: nil only for a
// 200 whose stream ends with [DONE] or whose body is a whole completion.
func chat(ctx context.Context, c *http.Client, url string, i int, w workload) error {
	body := fmt.Sprintf(`{"model":"llama","stream":%t,"max_tokens":%d,"messages":[{"role":"user","content":"request %d: tell me a story."}]}`, w.stream, w.maxTokens, i)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("content-type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if !w.stream {
		var completion struct {
			Choices []json.RawMessage `json:"choices"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&completion); err != nil {
			return err
		}
		if len(completion.Choices) == 0 {
			return errors.New("a completion without choices")
		}
		return nil
	}
	done := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		done = done || sc.Text() == "data: [DONE]"
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if !done {
		return errors.New("stream ended without [DONE]")
	}
	return nil
}

func render(rows []row, o options, load string) string {
	var b strings.Builder
	b.WriteString(sectionTitle + "\n\n")
	b.WriteString("`make bench-faults` (`go run ./e2e/cmd/benchfaults -out docs/benchmarks.md`).\n\n")
	fmt.Fprintf(&b, "Three vLLM simulators in one pool behind the xDS-driven host (inflow.so, the real control\n"+
		"plane, default scheduler), chat completions sent at %g requests/s (open loop); after %v one\n"+
		"simulator dies as a pod does (listener and connections closed at once) and stays listed in the\n"+
		"pool for the remaining %v; %d kills per mode, a fresh stack each. A request fails on an error\n"+
		"status or a stream cut before `[DONE]`. *In flight*: failed requests sent before the kill;\n"+
		"*after*: sent after it; *last failure*: how long after the kill the last failed request was sent\n"+
		"(worst run). Retries and connect failures are the pool cluster's `upstream_rq_retry` and\n"+
		"`upstream_cx_connect_fail`. %s.\n\n", o.rate, o.before, o.after, o.runs, load)
	b.WriteString("| workload | destination | kills | requests | failed | in flight | after | retries | connect failures | last failure |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		b.WriteString(r.cells() + "\n")
	}
	b.WriteString("\nA stream whose response had started fails in both modes: Envoy never retries once bytes\n" +
		"reached the client. A request that is first to find the pod dead (a refused connect) is retried\n" +
		"on the next listed endpoint with `override_host` and fails with `original_dst`; after that the\n" +
		"filter has cooled the endpoint down (the failure, at once) and its scrapes fail (stale after\n" +
		"200 ms), so it gets no picks, except when no endpoint has fresh metrics (scrapes timing out on\n" +
		"a loaded machine) after its cooldown ended: the pick then fails open to least in flight, and the\n" +
		"dead endpoint has none in flight; with `override_host` that costs a retry, with `original_dst` a\n" +
		"failed request. Why this makes `override_host` the default: controlplane/README.md, Pool\n" +
		"destinations.\n")
	b.WriteString("\nThe failures, by kind:\n\n")
	for _, r := range rows {
		kinds := slices.Sorted(maps.Keys(r.errors))
		for i, k := range kinds {
			kinds[i] = fmt.Sprintf("%d %s", r.errors[k], k)
		}
		if len(kinds) == 0 {
			kinds = []string{"none"}
		}
		fmt.Fprintf(&b, "- %s, %s: %s\n", r.workload, r.mode, strings.Join(kinds, "; "))
	}
	return b.String()
}
