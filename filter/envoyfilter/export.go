package envoyfilter

import (
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/router"
)

// exportInterval is how often pool counters reach Envoy's stats; Envoy
// flushes stats to sinks every 5 s by default, so 1 s loses nothing.
const exportInterval = time.Second

// poolStats are the Envoy stats of one pool, defined when the config is
// parsed (the only time the metrics API can define them). They belong to
// the config: Envoy drops them with the config's stats scope, so an
// endpoint that left the pool leaves no stat behind once the last config
// naming it is gone.
type poolStats struct {
	sheds, failOpens, scrapeErrors api.CounterMetric
	staleEndpoints                 api.GaugeMetric
	picks                          map[string]api.CounterMetric // this config's endpoints, by address
	shared                         *sharedStats                 // nil without a relay
}

// sharedStats are a pool's state-relay stats, defined only when the config
// names a relay.
type sharedStats struct {
	connected                                 api.GaugeMetric
	scrapesSkipped, sent, received, unmatched api.CounterMetric
	dropped, snapshotsReceived                api.CounterMetric
}

func defineSharedStats(cb api.ConfigCallbackHandler, pool string) *sharedStats {
	counter := func(stat string) api.CounterMetric { return cb.DefineCounterMetric(protocol.PoolStat(pool, stat)) }
	return &sharedStats{
		connected:         cb.DefineGaugeMetric(protocol.PoolStat(pool, protocol.PoolStatSharedConnected)),
		scrapesSkipped:    counter(protocol.PoolStatScrapesSkipped),
		sent:              counter(protocol.PoolStatSharedPlacementsSent),
		received:          counter(protocol.PoolStatSharedPlacementsReceived),
		unmatched:         counter(protocol.PoolStatSharedPlacementsUnknown),
		dropped:           counter(protocol.PoolStatSharedPlacementsDropped),
		snapshotsReceived: counter(protocol.PoolStatSharedSnapshotsReceived),
	}
}

func (ss *sharedStats) record(st pool.Stats) {
	if ss == nil {
		return
	}
	var up uint64
	if st.Shared.Connected {
		up = 1
	}
	ss.connected.Record(up)
	add(ss.scrapesSkipped, st.ScrapesSkipped)
	add(ss.sent, st.Shared.PlacementsSent)
	add(ss.received, st.Shared.PlacementsReceived)
	add(ss.unmatched, st.Shared.PlacementsUnmatched)
	add(ss.dropped, st.Shared.PlacementsDropped)
	add(ss.snapshotsReceived, st.Shared.SnapshotsReceived)
}

// exporter copies the pools' counters into Envoy stats in the background;
// Stop ends it. It keeps nothing per endpoint beyond its config's stats:
// which increments were already exported is tracked by the counters
// themselves (pool.Counter), so exporters of an old and a new config that
// run side by side add each increment once.
type exporter struct {
	router *router.Router
	stats  map[string]*poolStats // by pool name
	tokens []tokenStat
	stop   chan struct{}
	done   chan struct{}
}

func definePoolStats(cb api.ConfigCallbackHandler, r *router.Router) map[string]*poolStats {
	out := make(map[string]*poolStats)
	if cb == nil {
		return out
	}
	now := time.Now()
	for name, s := range r.Schedulers() {
		ps := &poolStats{
			sheds:          cb.DefineCounterMetric(protocol.PoolStat(name, protocol.PoolStatSheds)),
			failOpens:      cb.DefineCounterMetric(protocol.PoolStat(name, protocol.PoolStatFailOpens)),
			scrapeErrors:   cb.DefineCounterMetric(protocol.PoolStat(name, protocol.PoolStatScrapeErrors)),
			staleEndpoints: cb.DefineGaugeMetric(protocol.PoolStat(name, protocol.PoolStatStaleEndpoints)),
			picks:          make(map[string]api.CounterMetric, len(s.Pool().Endpoints)),
		}
		for _, ep := range s.Pool().Endpoints {
			ps.picks[ep.Addr] = cb.DefineCounterMetric(protocol.EndpointStat(name, ep.Addr, protocol.EndpointStatPicks))
		}
		if s.SharesState() {
			ps.shared = defineSharedStats(cb, name)
		}
		// New endpoints are not scraped yet: a gauge left at 0 would claim
		// fresh metrics nobody has seen.
		ps.staleEndpoints.Record(uint64(s.Stats(now).StaleEndpoints))
		out[name] = ps
	}
	return out
}

// tokenStat is one token counter and the count it mirrors.
type tokenStat struct {
	counter api.CounterMetric
	source  *pool.Counter
}

// defineTokenStats defines the token counters: the gateway's
// inflow_tokens_<type>_total and each model's
// inflow.model.<model>.tokens_<type>_total.
func defineTokenStats(cb api.ConfigCallbackHandler, t tokenTable) []tokenStat {
	if cb == nil {
		return nil
	}
	var out []tokenStat
	for i, tf := range tokenFields {
		out = append(out, tokenStat{cb.DefineCounterMetric(protocol.TokenStat(tf.stat)), &allTokens[i]})
		for model, c := range t {
			out = append(out, tokenStat{cb.DefineCounterMetric(protocol.ModelTokenStat(model, tf.stat)), &c[i]})
		}
	}
	return out
}

func startExporter(r *router.Router, stats map[string]*poolStats, tokens []tokenStat) *exporter {
	e := &exporter{router: r, stats: stats, tokens: tokens, stop: make(chan struct{}), done: make(chan struct{})}
	if len(stats) == 0 && len(tokens) == 0 {
		close(e.done)
		return e
	}
	go e.run()
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

func (e *exporter) run() {
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
		case now := <-t.C:
			e.export(now)
		}
	}
}

// export adds what every pool counted since the last export to its stats.
func (e *exporter) export(now time.Time) {
	for name, s := range e.router.Schedulers() {
		if ps := e.stats[name]; ps != nil {
			ps.record(s.Export(now))
		}
	}
	for _, ts := range e.tokens {
		add(ts.counter, ts.source.TakeUnexported())
	}
}

func (ps *poolStats) record(st pool.Stats) {
	for _, ep := range st.Endpoints {
		if c := ps.picks[ep.Addr]; c != nil {
			add(c, ep.Picks)
		}
	}
	add(ps.sheds, st.Sheds)
	add(ps.failOpens, st.FailOpens)
	add(ps.scrapeErrors, st.ScrapeErrors)
	ps.staleEndpoints.Record(uint64(st.StaleEndpoints))
	ps.shared.record(st)
}

func add(c api.CounterMetric, n uint64) {
	if n > 0 {
		c.Increment(int64(n))
	}
}
