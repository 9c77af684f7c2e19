package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"k8s.io/client-go/kubernetes"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/hostxds"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// The host phase runs the same churn with traffic: a vLLM simulator
// listens on each pod's IP, an xDS-driven envoyhost running inflow.so
// follows the control plane, and clients send chat requests through it
// while the pods roll through NotReady and back. Each request carries its
// send time, each simulator records the send times of what reached it, and
// a watcher records when the host took each version, so the benchmark can
// say, per flip, when the host routed by it and whether any request sent
// after that reached a NotReady pod.

// headerSent carries a request's send time, ns since the run's epoch.
const headerSent = "x-bench-sent"

// hostRun is the traffic side of the host phase.
type hostRun struct {
	host   *harness.Host
	sims   []*sim.Server
	epoch  time.Time
	mu     sync.Mutex
	sent   [][]time.Duration // per pod: send times of the requests it got
	scrape [][]time.Duration // per pod: when the filter's scrapes reached it
	taken  []taken           // versions the host took, in order
	client openai.Client

	requests, failed atomic.Int64
	firstErr         atomic.Value
}

// taken is when the host had taken the filter config and endpoints of a
// version.
type taken struct {
	at      time.Duration
	version uint64
}

func startHostRun(ctx context.Context, xds string, ips []string, port int) (*hostRun, error) {
	r := &hostRun{epoch: time.Now(), sent: make([][]time.Duration, len(ips)), scrape: make([][]time.Duration, len(ips))}
	for i, ip := range ips {
		s, err := sim.Start(ctx, sim.Options{Model: model, Listen: net.JoinHostPort(ip, strconv.Itoa(port)),
			TTFTBase: time.Millisecond, PrefillPerToken: time.Microsecond, ITL: time.Microsecond,
			OnRequest: func(req *http.Request) {
				d, _ := strconv.ParseInt(req.Header.Get(headerSent), 10, 64)
				r.mu.Lock()
				r.sent[i] = append(r.sent[i], time.Duration(d))
				r.mu.Unlock()
			},
			OnScrape: func() {
				at := r.since()
				r.mu.Lock()
				r.scrape[i] = append(r.scrape[i], at)
				r.mu.Unlock()
			}})
		if err != nil {
			r.close()
			return nil, fmt.Errorf("simulator on %s: %w", ip, err)
		}
		r.sims = append(r.sims, s)
	}
	h, err := harness.StartXDSHost(ctx, harness.XDSHostOptions{ControlPlane: xds, Listener: "public"})
	if err != nil {
		r.close()
		return nil, fmt.Errorf("envoyhost (make build-host build-filter): %w", err)
	}
	r.host = h
	r.client = openai.NewClient(option.WithBaseURL(h.URL("/v1/")), option.WithAPIKey("bench"), option.WithMaxRetries(0))
	go r.watch(ctx)
	return r, nil
}

func (r *hostRun) close() {
	if r.host != nil {
		r.host.Close()
	}
	for _, s := range r.sims {
		_ = s.Close()
	}
}

func (r *hostRun) since() time.Duration { return time.Since(r.epoch) }

// watch records each version the host takes: its filter config (ECDS,
// the last type of each ordered snapshot) and endpoints.
func (r *hostRun) watch(ctx context.Context) {
	var last uint64
	for ctx.Err() == nil {
		err := r.host.Agent().Await(ctx, func(st hostxds.Status) bool {
			return atLeast(st, last+1)
		})
		if err != nil {
			return
		}
		st := r.host.Agent().Status()
		v := min(parseVersion(st.Accepted[resource.ExtensionConfigType]), parseVersion(st.Accepted[resource.EndpointType]))
		r.mu.Lock()
		r.taken = append(r.taken, taken{at: r.since(), version: v})
		r.mu.Unlock()
		last = v
	}
}

func atLeast(st hostxds.Status, v uint64) bool {
	return parseVersion(st.Accepted[resource.ExtensionConfigType]) >= v && parseVersion(st.Accepted[resource.EndpointType]) >= v
}

func parseVersion(s string) uint64 {
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

// takenAt is when the host had taken version v, if it has.
func (r *hostRun) takenAt(v uint64) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.taken {
		if t.version >= v {
			return t.at, true
		}
	}
	return 0, false
}

// sentBetween counts requests pod i got that were sent in (from, to).
func (r *hostRun) sentBetween(i int, from, to time.Duration) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.sent[i] {
		if s > from && s < to {
			n++
		}
	}
	return n
}

// firstAfter is the send time of the first request pod i got that was
// sent after from.
func (r *hostRun) firstAfter(i int, from time.Duration) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	first, ok := time.Duration(0), false
	for _, s := range r.sent[i] {
		if s > from && (!ok || s < first) {
			first, ok = s, true
		}
	}
	return first, ok
}

// scrapedAfter is the first scrape of pod i after from, and whether pod i
// was scraped in (from, to] at all.
func (r *hostRun) scrapedAfter(i int, from, to time.Duration) (first time.Duration, ok, between bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.scrape[i] {
		if s > from && s <= to {
			between = true
		}
		if s > to && (!ok || s < first) {
			first, ok = s, true
		}
	}
	return first, ok, between
}

// scrapeSlack is how long after the host took a pod's removal a scrape
// may still arrive: one already under way when the old config went.
const scrapeSlack = 50 * time.Millisecond

// load runs clients sending chat requests until stop is closed, each
// expected to succeed; it returns when all have stopped.
func (r *hostRun) load(clients int, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
					Model:    model,
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(fmt.Sprintf("hello %d", rand.Uint64()))},
				}, option.WithHeader(headerSent, strconv.FormatInt(int64(r.since()), 10)))
				cancel()
				r.requests.Add(1)
				if err != nil {
					r.failed.Add(1)
					r.firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	wg.Wait()
}

// flip is one readiness change of pod i through the host.
type flip struct {
	pod     int
	ready   bool
	written time.Duration // just before the status write
	from    uint64        // the version served before it
}

// hostResult is what the host phase measured.
type hostResult struct {
	notReady, ready []time.Duration // status write -> the host took it
	// served is, per Ready flip, status write -> the send time of the
	// first request that reached the pod: routable end to end, including
	// the filter's first scrape of it, and bounded above by how often the
	// load happens to pick it. unserved counts Ready flips no request
	// reached before the run ended.
	served   []time.Duration
	unserved int
	// scraped is, per Ready flip, status write -> the filter's first
	// scrape of the pod: it starts scraping an endpoint the moment a
	// config names it, and a scraped endpoint is a candidate, so this is
	// when the pod became routable, free of the load's sampling.
	// scrapedThrough counts Ready flips where the scrapes never stopped
	// while the pod was NotReady (the host took both changes in one
	// version, or an old config still held it), which are not measured.
	scraped          []time.Duration
	scrapedThrough   int
	requests, failed int64
	firstErr         string
	// late counts requests a NotReady pod got that were sent after the
	// host took its removal and before it was Ready again.
	late         int
	drained      string
	maxUnavail   int
	flipsPerSec  float64
	clients      int
	scrapeInterv string
	// controlPlane is its CPU over the phase; rss and peak its memory
	// after it.
	controlPlane usage
	rss, peak    string
}

// readyTarget is issue 12's bound: a pod becoming Ready is routable in
// under this at p99.
const readyTarget = time.Second

// rolling takes every pod through NotReady and back under load, at most
// unavailable at a time (a rollout's maxUnavailable), one status write
// every interval, and measures each flip at the host.
func rolling(ctx context.Context, kc kubernetes.Interface, obs *observer, r *hostRun, ips []string, port, unavailable, clients int, interval time.Duration) (*hostResult, error) {
	stop := make(chan struct{})
	loaded := make(chan struct{})
	go func() { r.load(clients, stop); close(loaded) }()
	var flips []flip
	write := func(i int, ready bool) error {
		flips = append(flips, flip{pod: i, ready: ready, written: r.since(), from: obs.version()})
		err := setReady(ctx, kc, podName(i), ready)
		time.Sleep(interval)
		return err
	}
	order := make([]int, len(ips))
	for i := range order {
		order[i] = (i*7919 + 13) % len(ips)
	}
	var err error
	for k, i := range order {
		if err = write(i, false); err != nil {
			break
		}
		if k >= unavailable-1 {
			if err = write(order[k-unavailable+1], true); err != nil {
				break
			}
		}
	}
	for k := max(0, len(order)-unavailable+1); err == nil && k < len(order); k++ {
		err = write(order[k], true)
	}
	if err == nil {
		err = r.settle(ctx, obs, ips, port, flips)
	}
	if err == nil {
		r.awaitServed(ctx, flips)
	}
	close(stop)
	<-loaded
	if err != nil {
		return nil, err
	}
	res := &hostResult{requests: r.requests.Load(), failed: r.failed.Load(), maxUnavail: unavailable,
		flipsPerSec: float64(time.Second) / float64(interval), clients: clients}
	if e, ok := r.firstErr.Load().(string); ok {
		res.firstErr = e
	}
	gone := map[int]time.Duration{} // pod -> when the host took its NotReady
	for n, f := range flips {
		ep := net.JoinHostPort(ips[f.pod], strconv.Itoa(port))
		v, _ := obs.versionOf(ep, f.ready, f.from)
		at, _ := r.takenAt(v)
		if f.ready {
			res.ready = append(res.ready, at-f.written)
			if first, ok := r.firstAfter(f.pod, f.written); ok {
				res.served = append(res.served, first-f.written)
			} else {
				res.unserved++
			}
			g, ok := gone[f.pod]
			first, scraped, between := r.scrapedAfter(f.pod, g+scrapeSlack, f.written)
			if !ok || g >= f.written || between || !scraped {
				res.scrapedThrough++
				continue
			}
			res.scraped = append(res.scraped, first-f.written)
			continue
		}
		gone[f.pod] = at
		res.notReady = append(res.notReady, at-f.written)
		back := time.Duration(1<<63 - 1)
		for _, g := range flips[n+1:] {
			if g.pod == f.pod && g.ready {
				back = g.written
				break
			}
		}
		res.late += r.sentBetween(f.pod, at, back)
	}
	stats, err := r.host.Stats(ctx)
	if err != nil {
		return nil, err
	}
	res.drained = stats["listener.public.downstream_cx_drained"]
	return res, nil
}

// awaitServed keeps the load on until each pod that turned Ready got a
// request sent after that (the last flips come just before the load would
// stop), for at most 10 s: what is still unserved then is reported.
func (r *hostRun) awaitServed(ctx context.Context, flips []flip) {
	_ = poll.Until(ctx, 10*time.Second, "every pod that turned Ready serving", func() bool {
		for _, f := range flips {
			if _, ok := r.firstAfter(f.pod, f.written); f.ready && !ok {
				return false
			}
		}
		return true
	})
}

// settle waits until every flip is in a served version the host took.
func (r *hostRun) settle(ctx context.Context, obs *observer, ips []string, port int, flips []flip) error {
	return poll.Until(ctx, 60*time.Second, "the host taking every flip", func() bool {
		for _, f := range flips {
			v, ok := obs.versionOf(net.JoinHostPort(ips[f.pod], strconv.Itoa(port)), f.ready, f.from)
			if !ok {
				return false
			}
			if _, ok := r.takenAt(v); !ok {
				return false
			}
		}
		return true
	})
}

func renderHost(pods int, res *hostResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nThrough the host (envoyhost + inflow.so driven by the control plane, a vLLM simulator per pod, %d clients, scrape interval %s): "+
		"every pod NotReady and back, at most %d at a time, %.0f status writes/s.\n\n", res.clients, res.scrapeInterv, res.maxUnavail, res.flipsPerSec)
	b.WriteString("| flips | count | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n")
	for _, row := range []struct {
		name string
		lat  []time.Duration
	}{
		{"NotReady: status write -> the host routes without it", res.notReady},
		{"Ready: status write -> the host routes with it", res.ready},
		{"Ready: status write -> the filter's first scrape of it (routable)", res.scraped},
		{"Ready: status write -> first request sent that reached it", res.served},
	} {
		if len(row.lat) == 0 {
			fmt.Fprintf(&b, "| %s | 0 | – | – | – |\n", row.name)
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s |\n", row.name, len(row.lat), ms(pct(row.lat, 0.5)), ms(pct(row.lat, 0.99)), ms(pct(row.lat, 1)))
	}
	fmt.Fprintf(&b, "\nReady flips not measured by scrape (scraped throughout their NotReady): %d. Ready flips no request reached before the run ended: %d. Requests during the churn: %d, failed: %d; requests sent after the host took a pod's NotReady that reached it: %d; connections drained: %s (%d pods). "+
		"Control-plane CPU over the phase: %s; memory after it: RSS %s, peak %s.\n",
		res.scrapedThrough, res.unserved, res.requests, res.failed, res.late, res.drained, pods, res.controlPlane, res.rss, res.peak)
	return b.String()
}

// check fails the benchmark on what the churn must never do.
func (res *hostResult) check() error {
	var errs []error
	if res.failed > 0 {
		errs = append(errs, fmt.Errorf("%d of %d requests failed during the churn (first: %s)", res.failed, res.requests, res.firstErr))
	}
	if res.late > 0 {
		errs = append(errs, fmt.Errorf("%d requests sent after the host took a pod's NotReady reached it", res.late))
	}
	for _, lat := range [][]time.Duration{res.ready, res.scraped} {
		if len(lat) == 0 {
			errs = append(errs, errors.New("no Ready flip was measured"))
		} else if p99 := pct(lat, 0.99); p99 >= readyTarget {
			errs = append(errs, fmt.Errorf("a Ready pod took %s at p99 to become routable (target: under %s)", p99, readyTarget))
		}
	}
	if res.unserved > 0 {
		errs = append(errs, fmt.Errorf("%d pods turned Ready and got no request before the run ended", res.unserved))
	}
	if res.drained != "0" {
		errs = append(errs, fmt.Errorf("the churn drained %s connections", res.drained))
	}
	return errors.Join(errs...)
}

// runHostPhase starts the simulators and the host, waits until the host
// routes to every pod, then rolls the pods.
func runHostPhase(ctx context.Context, kc kubernetes.Interface, obs *observer, xds string, ips []string, port int, hp hostPhase) (*hostResult, error) {
	r, err := startHostRun(ctx, xds, ips, port)
	if err != nil {
		return nil, err
	}
	defer r.close()
	if err := poll.Until(ctx, 60*time.Second, "the host taking the served version", func() bool {
		_, ok := r.takenAt(obs.version())
		return ok
	}); err != nil {
		return nil, err
	}
	res, err := rolling(ctx, kc, obs, r, ips, port, hp.unavailable, hp.clients, hp.interval)
	if err != nil {
		return nil, err
	}
	res.scrapeInterv = scrapeInterval
	return res, nil
}
