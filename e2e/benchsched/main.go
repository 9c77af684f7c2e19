// Command benchsched is the scheduling-quality benchmark (make bench-sched):
// it drives six vLLM simulators with a chat workload of shared system
// prompts, multi-turn conversations and two LoRA adapters, at a load that
// saturates round-robin, and compares endpoint-picking policies: random,
// round-robin, least-in-flight, Inflow's scheduler with its default
// profile (fed by real /metrics scrapes) and the Inference Extension's own
// Endpoint Picker (gieepp.go). It reports TTFT percentiles,
// throughput and the simulators' prefix-cache hit rate in one table.
//
// By default (-via host) every policy runs through the ABI host with a
// real Go filter .so, driven over xDS: Inflow is inflow.so picking in
// process from its own scrapes, configured by the real control plane; the
// baselines pick in the client and steer an ORIGINAL_DST cluster with the
// x-gateway-destination-endpoint header through a pass-through filter.
// -via direct calls the scheduler package in process instead, to measure
// the picks alone.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// maxTokens keeps decode short: the benchmark is about where prefill
// happens, and a 2-core machine cannot stream long answers at this rate.
const maxTokens = 16

var timeNow = time.Now

type options struct {
	servers  int
	rate     float64
	duration time.Duration
	seed     uint64
	out      string
	via      string
}

// simOptions models small replicas so that six of them saturate on one
// machine: 2 sequences at once; 16K tokens of KV cache, less than the
// 12 system prompt x model combinations (~1,500 tokens each) need, so where
// a prompt goes decides whether it is cached; one active LoRA adapter at a
// time (vLLM's default max_loras). Prefill and decode costs are the
// simulator's Llama-3-8B/H100 defaults.
func simOptions() sim.Options {
	return sim.Options{
		Model:      baseModel,
		LoRAs:      []string{"sql-lora", "tweet-lora"},
		MaxLoRAs:   1,
		MaxNumSeqs: 2,
		KVBlocks:   1024,
	}
}

type profileFlags []string

func (p *profileFlags) String() string     { return strings.Join(*p, " ") }
func (p *profileFlags) Set(v string) error { *p = append(*p, v); return nil }

type result struct {
	policy              string
	ttft                []time.Duration
	errors              int
	elapsed             time.Duration
	hits, queries       uint64
	failOpens, pickErrs uint64
	byKind              map[string][]time.Duration // "model turn-1" / "model turn-n"
}

func main() {
	var o options
	flag.IntVar(&o.servers, "servers", 6, "simulated vLLM servers")
	flag.Float64Var(&o.rate, "rate", 22, "request arrivals per second (Poisson)")
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "how long to send requests for, per policy")
	flag.Uint64Var(&o.seed, "seed", 1, "workload seed")
	flag.StringVar(&o.out, "out", "", "markdown file whose bench-sched section is replaced by the results")
	flag.StringVar(&o.via, "via", "host", "host: through the ABI host and the real .so; direct: scheduler package in process")
	baselines := flag.Bool("baselines", true, "also run random, round-robin and least-in-flight")
	only := flag.String("scenario", "", "run only this table: policies, "+scenarioNames()+", "+replicasSection+" (default: all)")
	withEPP := flag.Bool("epp", true, "also run the Inference Extension's EPP (through the host's ext_proc client; needs make gie-epp kube-assets)")
	var profiles profileFlags
	flag.Var(&profiles, "profile", `extra Inflow variant: a pool scheduler JSON object, e.g. '{"weights":{"in_flight":3}}' (repeatable)`)
	flag.Parse()
	if o.via != "host" && o.via != "direct" {
		log.Fatalf("-via must be host or direct, not %q", o.via)
	}
	if o.via == "host" && len(profiles) > 0 {
		log.Fatal("-profile variants run with -via direct")
	}

	ctx := context.Background()
	policies := []func(eps []*pool.Endpoint, addrs []string) (policy, error){
		func(eps []*pool.Endpoint, _ []string) (policy, error) {
			return &baseline{label: "random", eps: eps, kind: kindRandom}, nil
		},
		func(eps []*pool.Endpoint, _ []string) (policy, error) {
			return &baseline{label: "round-robin", eps: eps, kind: kindRoundRobin}, nil
		},
		func(eps []*pool.Endpoint, _ []string) (policy, error) {
			return &baseline{label: "least-in-flight", eps: eps, kind: kindLeastInFlight}, nil
		},
		func(_ []*pool.Endpoint, addrs []string) (policy, error) { return newInflow(addrs, nil, "") },
	}
	if !*baselines {
		policies = policies[3:]
	}
	if *withEPP && o.via == "host" {
		policies = append(policies, func(_ []*pool.Endpoint, addrs []string) (policy, error) { return newGIEEPP(ctx, addrs) })
	}
	for _, p := range profiles {
		policies = append(policies, func(_ []*pool.Endpoint, addrs []string) (policy, error) {
			var s config.Scheduler
			dec := json.NewDecoder(strings.NewReader(p))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&s); err != nil {
				return nil, fmt.Errorf("-profile %s: %w", p, err)
			}
			return newInflow(addrs, &s, p)
		})
	}
	for _, sc := range feedbackScenarios {
		if *only != "" && *only != sc.name {
			continue
		}
		rs, err := runScenario(ctx, o, sc)
		if err != nil {
			log.Fatal(err)
		}
		table := renderScenario(o, sc, rs)
		fmt.Print(table, "\n")
		if o.out != "" {
			if err := replaceSection(o.out, sc.name, table); err != nil {
				log.Fatal(err)
			}
		}
	}
	if *only == "" || *only == replicasSection {
		cpu, err := measureScrapeCPU(ctx)
		if err != nil {
			log.Fatal(err)
		}
		rs, err := runReplicas(ctx, o)
		if err != nil {
			log.Fatal(err)
		}
		table := renderReplicas(o, rs, cpu)
		fmt.Print(table, "\n")
		if o.out != "" {
			if err := replaceSection(o.out, replicasSection, table); err != nil {
				log.Fatal(err)
			}
		}
	}
	if *only != "" && *only != "policies" {
		return
	}
	var results []result
	for _, mk := range policies {
		r, err := run(ctx, o, mk)
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("%s: %d requests, TTFT p90 %v", r.policy, len(r.ttft), pct(r.ttft, 0.9))
		kinds := slices.Sorted(maps.Keys(r.byKind))
		for _, k := range kinds {
			log.Printf("    %-22s n=%4d p50 %6s p90 %6s", k, len(r.byKind[k]), ms(pct(r.byKind[k], 0.5)), ms(pct(r.byKind[k], 0.9)))
		}
		results = append(results, r)
	}
	table := render(o, results)
	fmt.Print(table)
	if o.out != "" {
		if err := replaceSection(o.out, "bench-sched", table); err != nil {
			log.Fatal(err)
		}
	}
}

func scenarioNames() string {
	var names []string
	for _, sc := range feedbackScenarios {
		names = append(names, sc.name)
	}
	return strings.Join(names, ", ")
}

// run starts a fresh cluster (cold caches), sends the workload through one
// policy and collects the results.
func run(ctx context.Context, o options, mk func([]*pool.Endpoint, []string) (policy, error)) (result, error) {
	cluster, err := startSims(ctx, o.servers, simOptions())
	if err != nil {
		return result{}, err
	}
	defer cluster.Close()
	addrs := cluster.Addrs()
	// The baselines count their own in-flight requests on these endpoints.
	eps := make([]*pool.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = &pool.Endpoint{Addr: a}
	}
	p, err := mk(eps, addrs)
	if err != nil {
		return result{}, err
	}
	defer p.close()
	_, isInflow := p.(*inflow)
	var via *route
	if epp, isEPP := p.(*gieEPP); isEPP {
		if via, err = epp.route(ctx); err != nil {
			return result{}, err
		}
		defer via.close()
	} else if o.via == "host" {
		if via, err = startHost(ctx, addrs, isInflow); err != nil {
			return result{}, err
		}
		defer via.close()
		if isInflow {
			if err := waitHostFresh(ctx, via.host); err != nil {
				return result{}, err
			}
		}
	} else if isInflow {
		if err := waitFresh(ctx, p.(*inflow)); err != nil {
			return result{}, err
		}
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true}, Timeout: 2 * time.Minute}
	w := newWorkload(o.seed)
	res := result{policy: p.name(), byKind: map[string][]time.Duration{}}
	answered := 0 // requests the host answered: each went through a pick
	var mu sync.Mutex
	res.elapsed = drive(o.seed, o.rate, o.duration, func() {
		ttft, kind, err := send(client, p, via, w)
		mu.Lock()
		defer mu.Unlock()
		if !errors.Is(err, errNoResponse) {
			answered++
		}
		if res.errors += count(err); err == nil {
			res.ttft = append(res.ttft, ttft)
			res.byKind[kind] = append(res.byKind[kind], ttft)
		}
	})
	for _, s := range cluster.Servers {
		st := s.Stats()
		res.hits += st.PrefixCacheHits
		res.queries += st.PrefixCacheQueries
	}
	switch {
	case via != nil && isInflow:
		// The filter copies its counters into Envoy's stats once a second;
		// an export that covers every pick covers every fail-open too.
		if err := waitHostPicks(ctx, via.host, addrs, answered); err != nil {
			return result{}, err
		}
		res.failOpens, _ = hostStat(ctx, via.host, protocol.PoolStat("sim", protocol.PoolStatFailOpens))
	case isInflow:
		res.failOpens = p.(*inflow).stats().FailOpens
	}
	return res, nil
}

// drive calls do at each arrival of a seeded Poisson schedule of rate per
// second over d (an open loop: arrivals do not wait for answers) and waits
// for every call; it returns the time taken.
func drive(seed uint64, rate float64, d time.Duration, do func()) time.Duration {
	arrivals := rand.New(rand.NewPCG(seed, 42))
	var wg sync.WaitGroup
	start := time.Now()
	for _, at := range arrivalTimes(arrivals, rate, d) {
		time.Sleep(time.Until(start.Add(at))) // pacing the open-loop arrivals
		wg.Go(do)
	}
	wg.Wait()
	return time.Since(start)
}

// count is 1 for an error, 0 for none.
func count(err error) int {
	if err != nil {
		return 1
	}
	return 0
}

// arrivalTimes returns rate x duration arrival offsets drawn uniformly over
// the duration, sorted: a Poisson process conditioned on its count, so
// every seed offers exactly the same load and only the timing varies.
func arrivalTimes(r *rand.Rand, rate float64, d time.Duration) []time.Duration {
	n := int(rate * d.Seconds())
	at := make([]time.Duration, n)
	for i := range at {
		at[i] = time.Duration(r.Int64N(int64(d)))
	}
	slices.Sort(at)
	return at
}

// waitFresh waits for the first scrape of every simulator, as a filter
// would have had them long before traffic arrives.
func waitFresh(ctx context.Context, p *inflow) error {
	return poll.Until(ctx, 10*time.Second, "a first scrape of every simulator", func() bool { return p.stats().StaleEndpoints == 0 })
}

// errNoResponse marks a request the host never answered, which may not
// have reached a pick.
var errNoResponse = errors.New("no response")

// send runs one request and returns its time to first token: the first SSE
// event, which the simulator (like vLLM) sends with the first token.
func send(client *http.Client, p policy, via *route, w *workload) (_ time.Duration, kind string, _ error) {
	c, body, messages := w.next()
	defer w.done(c)
	kind = c.model + " later turn"
	if c.turns == 1 {
		kind = c.model + " first turn"
	}
	url, steer := "", ""
	if via == nil || !picksInHost(p) {
		ep, err := p.pick(c.model, messages)
		if err != nil {
			return 0, kind, err
		}
		ep.Acquire()
		defer ep.Release()
		url = "http://" + ep.Addr + "/v1/chat/completions"
		if via != nil {
			url, steer = via.url(), ep.Addr
		}
	} else {
		url = via.url()
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, kind, err
	}
	req.Header.Set("Content-Type", "application/json")
	if steer != "" {
		req.Header.Set(protocol.HeaderDestination, steer)
	}
	ttft, err := measure(client, req, w.stream)
	return ttft, kind, err
}

// measure sends req and returns its time to first token: the first SSE
// event of a stream, which the simulator (like vLLM) sends with the first
// token; for a non-streaming request, the time to the whole response.
func measure(client *http.Client, req *http.Request, stream bool) (time.Duration, error) {
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errNoResponse, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	if !stream {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return 0, err
		}
		return time.Since(t0), nil
	}
	r := bufio.NewReader(resp.Body)
	var ttft time.Duration
	for {
		line, err := r.ReadSlice('\n')
		if ttft == 0 && bytes.HasPrefix(line, []byte("data: ")) {
			ttft = time.Since(t0)
		}
		if bytes.HasPrefix(line, []byte("data: [DONE]")) {
			return ttft, nil
		}
		if err != nil {
			return 0, fmt.Errorf("stream ended early: %w", err)
		}
	}
}

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func render(o options, rs []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d simulated vLLM servers (max_num_seqs 2, 16K-token KV cache, max_loras 1), %.0f requests/s (Poisson arrivals, %d requests) for %s per policy, seed %d, %s.\n\n",
		o.servers, o.rate, int(o.rate*o.duration.Seconds()), o.duration, o.seed, viaText[o.via])
	b.WriteString("| policy | TTFT p50 | TTFT p90 | TTFT p99 | requests/s | prefix-cache hit rate | errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		hit := 0.0
		if r.queries > 0 {
			hit = float64(r.hits) / float64(r.queries)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.1f | %.1f%% | %d |\n", r.policy,
			ms(pct(r.ttft, 0.5)), ms(pct(r.ttft, 0.9)), ms(pct(r.ttft, 0.99)),
			float64(len(r.ttft))/r.elapsed.Seconds(), 100*hit, r.errors)
	}
	for _, r := range rs {
		if r.failOpens > 0 {
			fmt.Fprintf(&b, "\n%s failed open %d times (no fresh metrics).\n", r.policy, r.failOpens)
		}
	}
	b.WriteString(eppComparison(rs))
	return b.String()
}

var viaText = map[string]string{
	"host":   "every policy through the ABI host (Inflow: inflow.so picking in process; the GIE EPP: the host's ext_proc client asking the real EPP, which reads the simulators as an InferencePool's pods on a kube-apiserver and scrapes them every 50 ms; baselines: client-side pick steering the host through a pass-through filter); each simulator on its own loopback address, as pods have their own IPs",
	"direct": "picks made by calling the scheduler package in process, requests sent straight to the simulators",
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

// replaceSection puts table between the <!-- name:begin --> and
// <!-- name:end --> markers of file.
func replaceSection(file, name, table string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s := string(data)
	beginMarker, endMarker := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s ... %s section", file, beginMarker, endMarker)
	}
	s = s[:i+len(beginMarker)] + "\n" + table + s[j:]
	return os.WriteFile(file, []byte(s), 0o644)
}
