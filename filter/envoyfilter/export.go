package envoyfilter

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/router"
	"github.com/inflow-gateway/inflow/filter/scheduler"
)

// exportInterval is how often pool counters reach Envoy's stats; Envoy
// flushes stats to sinks every 5 s by default, so 1 s loses nothing.
const exportInterval = time.Second

// watermarks remember, per source counter (by identity), the value
// already added to Envoy. Shared by every config's exporter, so while an old
// and a new config both run, each increment is added once; a pool dropped
// and re-created has new counters and so starts from zero.
var watermarks sync.Map // *atomic.Uint64 or *pool.Endpoint -> *atomic.Uint64

// poolStats are the Envoy stats of one pool, defined when the config is
// parsed (the only time the metrics API can define them).
type poolStats struct {
	sheds, failOpens, scrapeErrors api.CounterMetric
	staleEndpoints                 api.GaugeMetric
	picks                          map[string]api.CounterMetric // by endpoint address
}

// exporter copies the schedulers' counters into Envoy stats in the
// background; Stop ends it.
type exporter struct {
	stop chan struct{}
	done chan struct{}
}

// statPart makes a pool name or address one segment of a dotted stat name.
var statPart = strings.NewReplacer(".", "_", ":", "_", "[", "", "]", "")

func statName(parts ...string) string {
	for i := range parts {
		parts[i] = statPart.Replace(parts[i])
	}
	return "inflow." + strings.Join(parts, ".")
}

func definePoolStats(cb api.ConfigCallbackHandler, r *router.Router) map[string]*poolStats {
	out := make(map[string]*poolStats)
	if cb == nil {
		return out
	}
	for name, s := range r.Schedulers() {
		ps := &poolStats{
			sheds:          cb.DefineCounterMetric(statName("pool", name, "sheds_total")),
			failOpens:      cb.DefineCounterMetric(statName("pool", name, "fail_opens_total")),
			scrapeErrors:   cb.DefineCounterMetric(statName("pool", name, "scrape_errors_total")),
			staleEndpoints: cb.DefineGaugeMetric(statName("pool", name, "stale_endpoints")),
			picks:          make(map[string]api.CounterMetric),
		}
		for _, ep := range s.Pool().Endpoints {
			ps.picks[ep.Addr] = cb.DefineCounterMetric(statName("pool", name, "endpoint", ep.Addr, "picks_total"))
		}
		// Until the first export every endpoint counts as stale: a gauge
		// left at 0 would claim fresh metrics nobody has scraped yet.
		ps.staleEndpoints.Record(uint64(countStale(s, time.Now())))
		out[name] = ps
	}
	return out
}

func startExporter(r *router.Router, stats map[string]*poolStats) *exporter {
	e := &exporter{stop: make(chan struct{}), done: make(chan struct{})}
	if len(stats) == 0 {
		close(e.done)
		return e
	}
	go e.run(r, stats)
	return e
}

// Stop ends the exporter and waits for it.
func (e *exporter) Stop() {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	<-e.done
}

func (e *exporter) run(r *router.Router, stats map[string]*poolStats) {
	defer close(e.done)
	// The metrics API panics once Envoy has dropped the config; that ends
	// this exporter, never the process.
	defer func() {
		if p := recover(); p != nil {
			api.LogDebugf("inflow: stats exporter stopped: %v", p)
		}
	}()
	t := time.NewTicker(exportInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			for name, s := range r.Schedulers() {
				if ps := stats[name]; ps != nil {
					exportPool(ps, s)
				}
			}
		}
	}
}

func exportPool(ps *poolStats, s *scheduler.Scheduler) {
	c := s.Counters()
	addDelta(ps.sheds, &c.Sheds, c.Sheds.Load())
	addDelta(ps.failOpens, &c.FailOpens, c.FailOpens.Load())
	addDelta(ps.scrapeErrors, &c.ScrapeErrors, c.ScrapeErrors.Load())
	for _, ep := range s.Pool().Endpoints {
		if pc := ps.picks[ep.Addr]; pc != nil {
			addDelta(pc, ep, ep.Picks())
		}
	}
	ps.staleEndpoints.Record(uint64(countStale(s, time.Now())))
}

func countStale(s *scheduler.Scheduler, now time.Time) int {
	stale := 0
	for _, ep := range s.Pool().Endpoints {
		if !ep.Metrics().Fresh(now, s.Staleness()) {
			stale++
		}
	}
	return stale
}

// addDelta adds to c what total gained since the last export of source.
func addDelta(c api.CounterMetric, source any, total uint64) {
	v, _ := watermarks.LoadOrStore(source, new(atomic.Uint64))
	prev := v.(*atomic.Uint64).Swap(total)
	if total > prev {
		c.Increment(int64(total - prev))
	}
}
