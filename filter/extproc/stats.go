package extproc

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/router"
)

// Stats are the counters the filter defines as Envoy stats, under the same
// names, kept by the server instead of Envoy. The zero value is ready.
type Stats struct {
	requests, rewrites atomic.Uint64
	inFlight           atomic.Int64
	rejections         [len(rejectionStats)]atomic.Uint64
}

// rejectionStats are the rejection counters, in output order.
var rejectionStats = [...]string{
	protocol.StatRejected400, protocol.StatRejected404, protocol.StatRejected405, protocol.StatRejected413,
	protocol.StatRejected429, protocol.StatRejected503, protocol.StatInternalErrors,
}

func (s *Stats) countRejection(name string) {
	if i := slices.Index(rejectionStats[:], name); i >= 0 {
		s.rejections[i].Add(1)
	}
}

// Counter returns the named counter's value (tests read it).
func (s *Stats) Counter(name string) uint64 {
	switch name {
	case protocol.StatRequests:
		return s.requests.Load()
	case protocol.StatModelRewrites:
		return s.rewrites.Load()
	}
	if i := slices.Index(rejectionStats[:], name); i >= 0 {
		return s.rejections[i].Load()
	}
	return 0
}

// InFlight is the number of streams holding an endpoint.
func (s *Stats) InFlight() int64 { return s.inFlight.Load() }

// WriteMetrics writes the counters and the pools of r (nil: none) in the
// Prometheus text format. Pool and endpoint stats, dotted names in Envoy,
// become labels here.
func (s *Stats) WriteMetrics(w io.Writer, r *router.Router, now time.Time) error {
	p := &promWriter{w: w}
	p.metric(protocol.StatRequests, "counter", "inference requests seen", "", s.requests.Load())
	p.metric(protocol.StatModelRewrites, "counter", "request bodies whose model was rewritten", "", s.rewrites.Load())
	for i, name := range rejectionStats {
		p.metric(name, "counter", "requests answered with this status class", "", s.rejections[i].Load())
	}
	p.metric(protocol.StatInFlight, "gauge", "requests holding an endpoint", "", s.inFlight.Load())
	if r != nil {
		writePools(p, r, now)
	}
	return p.err
}

func writePools(p *promWriter, r *router.Router, now time.Time) {
	schedulers := r.Schedulers()
	names := make([]string, 0, len(schedulers))
	for n := range schedulers {
		names = append(names, n)
	}
	slices.Sort(names)
	type family struct {
		stat, kind, help string
		value            func(name string) any
	}
	stats := make(map[string]pool.Stats, len(names))
	for _, n := range names {
		stats[n] = schedulers[n].Stats(now)
	}
	for _, f := range []family{
		{protocol.PoolStatSheds, "counter", "sheddable requests answered 429", func(n string) any { return stats[n].Sheds }},
		{protocol.PoolStatFailOpens, "counter", "picks made without fresh metrics", func(n string) any { return stats[n].FailOpens }},
		{protocol.PoolStatScrapeErrors, "counter", "failed metrics scrapes", func(n string) any { return stats[n].ScrapeErrors }},
		{protocol.PoolStatStaleEndpoints, "gauge", "endpoints without fresh metrics", func(n string) any { return stats[n].StaleEndpoints }},
	} {
		p.header(protocol.PromPoolMetric(f.stat), f.kind, f.help)
		for _, n := range names {
			p.sample(protocol.PromPoolMetric(f.stat), `pool="`+n+`"`, f.value(n))
		}
	}
	picks := protocol.PromEndpointMetric(protocol.EndpointStatPicks)
	p.header(picks, "counter", "requests sent to the endpoint")
	for _, n := range names {
		for _, ep := range stats[n].Endpoints {
			p.sample(picks, `pool="`+n+`",endpoint="`+ep.Addr+`"`, ep.Picks)
		}
	}
}

type promWriter struct {
	w   io.Writer
	err error
}

func (p *promWriter) header(name, kind, help string) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
	}
}

func (p *promWriter) sample(name, labels string, v any) {
	if p.err != nil {
		return
	}
	var s string
	switch v := v.(type) {
	case uint64:
		s = strconv.FormatUint(v, 10)
	case int64:
		s = strconv.FormatInt(v, 10)
	case int:
		s = strconv.Itoa(v)
	}
	if labels != "" {
		name += "{" + labels + "}"
	}
	_, p.err = fmt.Fprintf(p.w, "%s %s\n", name, s)
}

func (p *promWriter) metric(name, kind, help, labels string, v any) {
	p.header(name, kind, help)
	p.sample(name, labels, v)
}
