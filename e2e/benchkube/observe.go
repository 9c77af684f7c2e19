package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/filter/config"
)

// observer follows the control plane's ADS stream as Envoy does and
// resolves each expected endpoint change at the first snapshot showing it.
type observer struct {
	envoy *xdstest.Envoy

	mu      sync.Mutex
	current map[string]bool
	pending map[string]expectation
	updated chan struct{}
	errc    chan error
	// listenerChanges counts LDS responses whose listener differs from the
	// one before (Envoy drains a changed listener; an identical one, which
	// a state-of-the-world push repeats, it ignores): churn should cause none.
	listenerChanges int
	lastListener    []byte
	// changes lists, per endpoint, the versions at which it came and went;
	// handled is the last version seen.
	changes map[string][]change
	handled uint64
}

// change is an endpoint appearing (present) or going at an xDS version.
type change struct {
	version uint64
	present bool
}

type expectation struct {
	present bool
	since   time.Time
	done    chan<- time.Duration
}

func observe(addr string) (*observer, error) {
	e, err := xdstest.Connect(addr, "benchkube")
	if err != nil {
		return nil, err
	}
	o := &observer{envoy: e, current: map[string]bool{}, pending: map[string]expectation{},
		updated: make(chan struct{}, 1), errc: make(chan error, 1), changes: map[string][]change{}}
	go o.loop()
	return o, nil
}

func (o *observer) close() { _ = o.envoy.Close() }

func (o *observer) loop() {
	for {
		r, err := o.envoy.Next(time.Hour)
		if err != nil {
			o.errc <- err
			return
		}
		now := time.Now()
		if err := o.envoy.Handle(r); err != nil {
			o.errc <- err
			return
		}
		eps, ok := endpoints(&o.envoy.State)
		o.mu.Lock()
		if l := o.envoy.State.Listeners["public"]; r.GetTypeUrl() == resource.ListenerType && l != nil {
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(l)
			if o.lastListener != nil && !bytes.Equal(b, o.lastListener) {
				o.listenerChanges++
			}
			o.lastListener = b
		}
		if !ok {
			o.mu.Unlock()
			continue
		}
		version, _ := strconv.ParseUint(r.GetVersionInfo(), 10, 64)
		o.handled = max(o.handled, version)
		for ep := range eps {
			if !o.current[ep] {
				o.changes[ep] = append(o.changes[ep], change{version, true})
			}
		}
		for ep := range o.current {
			if !eps[ep] {
				o.changes[ep] = append(o.changes[ep], change{version, false})
			}
		}
		o.current = eps
		for ep, x := range o.pending {
			if eps[ep] == x.present {
				x.done <- now.Sub(x.since)
				delete(o.pending, ep)
			}
		}
		o.mu.Unlock()
		select {
		case o.updated <- struct{}{}:
		default:
		}
	}
}

// endpoints of the one pool that Envoy can route to: in the filter config
// (ECDS: the filter may pick it) and, for an EDS (override_host) pool, in
// its ClusterLoadAssignment too (OverrideHost only connects to members).
func endpoints(s *xdstest.State) (map[string]bool, bool) {
	l, ok := s.Listeners["public"]
	if !ok {
		return nil, false
	}
	g, err := translator.GolangFilter(l, s.Extensions)
	if err != nil {
		return nil, false
	}
	c, err := config.FromAny(g.GetPluginConfig())
	if err != nil || len(c.Pools) != 1 {
		return nil, false
	}
	var members map[string]bool
	if cla, ok := s.Endpoints[translator.PoolClusterName(c.Pools[0].Name)]; ok {
		members = map[string]bool{}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				a := e.GetEndpoint().GetAddress().GetSocketAddress()
				members[net.JoinHostPort(a.GetAddress(), strconv.Itoa(int(a.GetPortValue())))] = true
			}
		}
	}
	m := make(map[string]bool, len(c.Pools[0].Endpoints))
	for _, ep := range c.Pools[0].Endpoints {
		if members == nil || members[ep] {
			m[ep] = true
		}
	}
	return m, true
}

// versionOf is the first version after which ep went present (or absent)
// since version from; ok is false when no served version shows it yet.
func (o *observer) versionOf(ep string, present bool, from uint64) (uint64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range o.changes[ep] {
		if c.version > from && c.present == present {
			return c.version, true
		}
	}
	return 0, false
}

// version is the last version the observer handled.
func (o *observer) version() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.handled
}

// listeners is how many times the listener changed so far.
func (o *observer) listeners() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.listenerChanges
}

// expect registers that ep will become present (or absent); done gets the
// latency once a served snapshot shows it.
func (o *observer) expect(ep string, present bool, done chan<- time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending[ep] = expectation{present: present, since: time.Now(), done: done}
}

// waitFor blocks until the served endpoints are exactly want.
func (o *observer) waitFor(want []string, d time.Duration) error {
	deadline := time.After(d)
	for {
		o.mu.Lock()
		got := make([]string, 0, len(o.current))
		for ep := range o.current {
			got = append(got, ep)
		}
		o.mu.Unlock()
		slices.Sort(got)
		w := slices.Sorted(slices.Values(want))
		if slices.Equal(got, w) {
			return nil
		}
		select {
		case <-o.updated:
		case err := <-o.errc:
			return err
		case <-deadline:
			return fmt.Errorf("served %d endpoints, want %d", len(got), len(want))
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }

func render(pods int, kubeVersion string, rows []row, mem func() (string, string), listenerChanges int) string {
	rss, peak := mem()
	var b strings.Builder
	fmt.Fprintf(&b, "Latest run: %d pods in one InferencePool, kube-apiserver %s + etcd (envtest), the control-plane binary in its own process, %s.\n\n",
		pods, kubeVersion, time.Now().UTC().Format("2006-01-02"))
	b.WriteString("| phase | flips | p50 ms | p99 ms | max ms | control-plane CPU |\n|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		cpu := r.use.String()
		if len(r.lat) == 0 {
			fmt.Fprintf(&b, "| %s | – | – | – | – | %s |\n", r.phase, cpu)
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s |\n", r.phase, len(r.lat), ms(pct(r.lat, 0.5)), ms(pct(r.lat, 0.99)), ms(pct(r.lat, 1)), cpu)
	}
	fmt.Fprintf(&b, "\nListener changes during the churn (each would drain connections in Envoy): %d. Control-plane memory after the run: RSS %s, peak %s.\n", listenerChanges, rss, peak)
	return b.String()
}

const (
	beginMarker = "<!-- bench-kube:begin -->"
	endMarker   = "<!-- bench-kube:end -->"
)

// replaceSection puts table between the bench-kube markers of file.
func replaceSection(file, table string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s := string(data)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s ... %s section", file, beginMarker, endMarker)
	}
	return os.WriteFile(file, []byte(s[:i+len(beginMarker)]+"\n"+table+s[j:]), 0o644)
}
