package pool

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Manager keeps pool state alive while at least one live config uses it:
// the endpoints (with their in-flight counts and metrics), their scrapers,
// the prefix index and the counters. Configs take a Lease per pool when
// parsed and release it when Envoy destroys them; since Envoy parses the
// new config before destroying the old one, a pool both configs name keeps
// everything across the update.
type Manager struct {
	mu    sync.Mutex
	pools map[string]*poolState
}

// Counters are a pool's monotonic event counts, kept across config
// updates. The filter exports them through Envoy's metrics API.
type Counters struct {
	// Sheds counts sheddable requests refused because the pool was saturated.
	Sheds Counter
	// FailOpens counts picks made by least-in-flight because no endpoint had
	// fresh metrics.
	FailOpens Counter
	// ScrapeErrors counts failed scrapes over all the pool's endpoints.
	ScrapeErrors Counter
	// ScrapesSkipped counts scrapes left out because another replica's
	// scrape of the endpoint had just arrived through the relay.
	ScrapesSkipped Counter
}

type poolState struct {
	name     string
	opts     atomic.Pointer[ScrapeOptions]
	prefix   *PrefixIndex
	counters Counters
	share    *Sharing
	// byAddr maps the retained endpoints' addresses to them, for the relay
	// stream's receiver; replaced whole when membership changes.
	byAddr atomic.Pointer[map[string]*Endpoint]

	// Guarded by Manager.mu.
	refs      int
	members   map[string]*member
	freeSlots []int
	nextSlot  int
	relay     string             // the relay shareLoop streams to
	stopShare context.CancelFunc // nil when not streaming
	shareDone chan struct{}
}

type member struct {
	ep   *Endpoint
	refs int
	// client is the endpoint's own scrape client (newScrapeClient), so
	// what net/http keeps per host goes away with the endpoint: one
	// process-wide Transport keeps an entry for every address whose dial
	// ever failed (golang/go#76784), i.e. for every pod that went away.
	client *http.Client
	stop   context.CancelFunc // nil when not scraping
	done   chan struct{}
}

// NewManager returns an empty Manager.
func NewManager() *Manager {
	return &Manager{pools: make(map[string]*poolState)}
}

// Lease is one config's hold on a pool. Its Pool snapshot lists exactly the
// addresses it was retained with.
type Lease struct {
	m        *Manager
	st       *poolState
	pool     *Pool
	released atomic.Bool
}

// Retain returns a lease on pool name with endpoints addrs, creating state
// and starting scrapers for what is new. opts replace the pool's scrape
// options (the newest config wins); zero fields take defaults.
// prefixCapacity sizes the prefix index when the pool is created.
func (m *Manager) Retain(name string, addrs []string, opts ScrapeOptions, prefixCapacity int) *Lease {
	opts = opts.withDefaults()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.pools[name]
	if st == nil {
		st = &poolState{name: name, prefix: NewPrefixIndex(prefixCapacity), members: make(map[string]*member), share: newSharing()}
		m.pools[name] = st
	}
	st.refs++
	st.opts.Store(&opts)
	p := &Pool{Name: name, Endpoints: make([]*Endpoint, 0, len(addrs))}
	for _, a := range addrs {
		mb := st.members[a]
		if mb == nil {
			mb = &member{ep: &Endpoint{Addr: a}}
			slot := st.allocSlot()
			st.prefix.AddServer(slot)
			mb.ep.slot.Store(int32(slot + 1))
			st.members[a] = mb
		}
		mb.refs++
		if mb.stop == nil && !opts.Disabled {
			if mb.client == nil {
				mb.client = newScrapeClient()
			}
			ctx, cancel := context.WithCancel(context.Background())
			mb.stop, mb.done = cancel, make(chan struct{})
			go st.scrapeLoop(ctx, mb.client, mb.ep, mb.done)
		}
		p.Endpoints = append(p.Endpoints, mb.ep)
	}
	st.indexMembers()
	if opts.Relay != st.relay {
		previous := st.stopSharing()
		if opts.Relay != "" {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			st.relay, st.stopShare, st.shareDone = opts.Relay, cancel, done
			go func() {
				if previous != nil {
					<-previous // one stream at a time owns the outbox
				}
				st.shareLoop(ctx, opts.Relay, done)
			}()
		}
	}
	return &Lease{m: m, st: st, pool: p}
}

// indexMembers publishes the address map of the current members. Called
// with Manager.mu held.
func (st *poolState) indexMembers() {
	byAddr := make(map[string]*Endpoint, len(st.members))
	for a, mb := range st.members {
		byAddr[a] = mb.ep
	}
	st.byAddr.Store(&byAddr)
}

// stopSharing ends the relay stream, if any, and returns the channel that
// closes when it has ended (nil if none ran). Called with Manager.mu held.
func (st *poolState) stopSharing() chan struct{} {
	if st.stopShare == nil {
		return nil
	}
	st.stopShare()
	done := st.shareDone
	st.relay, st.stopShare, st.shareDone = "", nil, nil
	return done
}

func (st *poolState) allocSlot() int {
	if n := len(st.freeSlots); n > 0 {
		s := st.freeSlots[n-1]
		st.freeSlots = st.freeSlots[:n-1]
		return s
	}
	st.nextSlot++
	return st.nextSlot - 1
}

// Release gives the lease back: endpoints no live lease names stop being
// scraped and leave the prefix index, and a pool no lease names is
// forgotten. It waits for the stopped scrapers to exit. Calling it again
// does nothing.
func (l *Lease) Release() {
	if l.released.Swap(true) {
		return
	}
	// Scrapers to wait for (nil done: none ran) and clients to close once
	// they have stopped.
	type leaving struct {
		done   chan struct{}
		client *http.Client
	}
	var gone []leaving
	l.m.mu.Lock()
	st := l.st
	for _, ep := range l.pool.Endpoints {
		mb := st.members[ep.Addr]
		if mb == nil {
			continue
		}
		if mb.refs--; mb.refs > 0 {
			continue
		}
		lv := leaving{client: mb.client}
		if mb.stop != nil {
			mb.stop()
			lv.done = mb.done
		}
		gone = append(gone, lv)
		slot := ep.Slot()
		ep.slot.Store(0)
		st.prefix.Purge(slot)
		st.freeSlots = append(st.freeSlots, slot)
		delete(st.members, ep.Addr)
	}
	st.indexMembers()
	var shareDone chan struct{}
	if st.refs--; st.refs == 0 && l.m.pools[st.name] == st {
		delete(l.m.pools, st.name)
		shareDone = st.stopSharing()
	}
	l.m.mu.Unlock()
	if shareDone != nil {
		<-shareDone
	}
	for _, lv := range gone {
		if lv.done != nil {
			<-lv.done
		}
		if lv.client != nil {
			lv.client.CloseIdleConnections()
		}
	}
}

// Pool is the lease's endpoint snapshot.
func (l *Lease) Pool() *Pool { return l.pool }

// Prefix is the pool's prefix index, shared by all leases on the pool.
func (l *Lease) Prefix() *PrefixIndex { return l.st.prefix }

// Counters are the pool's counters, shared by all leases on the pool.
func (l *Lease) Counters() *Counters { return &l.st.counters }

// Sharing is the pool's link to its state relay (it does nothing when the
// options name none).
func (l *Lease) Sharing() *Sharing { return l.st.share }

// Relay is the state relay the pool shares through ("" for none), as the
// newest config set it.
func (l *Lease) Relay() string { return l.st.opts.Load().Relay }

// Staleness is how old metrics may be and still be trusted.
func (l *Lease) Staleness() time.Duration { return l.st.opts.Load().Staleness }

// Stats is a point-in-time view of a pool for export as metrics.
type Stats struct {
	Pool           string
	Sheds          uint64
	FailOpens      uint64
	ScrapeErrors   uint64
	ScrapesSkipped uint64
	// Shared is what went through the state relay.
	Shared SharedStats
	// StaleEndpoints is a gauge: endpoints whose metrics are missing or
	// older than the staleness threshold.
	StaleEndpoints int
	Endpoints      []EndpointStats
}

// SharedStats counts a pool's traffic through its state relay.
type SharedStats struct {
	// Connected is a gauge: a relay stream is up.
	Connected                                                                  bool
	PlacementsSent, PlacementsReceived, PlacementsUnmatched, PlacementsDropped uint64
	SnapshotsSent, SnapshotsReceived                                           uint64
	WantsSent, WantsAnswered                                                   uint64
}

// EndpointStats is one endpoint's share of Stats.
type EndpointStats struct {
	Addr         string
	Picks        uint64
	ScrapeErrors uint64
	InFlight     int64
	Fresh        bool
}

// Stats reads the pool's counters and the lease's endpoints at now. It
// allocates; call it from a stats flush, not per request.
func (l *Lease) Stats(now time.Time) Stats { return l.read(now, (*Counter).Load) }

// Export is Stats for the sink of increments, Envoy's stats: its counter
// fields hold what each counter gained since the previous Export of the
// pool by any lease (see Counter.TakeUnexported); gauges are as in Stats.
// Only the filter's one Envoy exporter may call it: a second caller would
// take increments away from it.
func (l *Lease) Export(now time.Time) Stats { return l.read(now, (*Counter).TakeUnexported) }

func (l *Lease) read(now time.Time, count func(*Counter) uint64) Stats {
	s := Stats{Pool: l.pool.Name, Endpoints: make([]EndpointStats, 0, len(l.pool.Endpoints))}
	staleness := l.Staleness()
	for _, ep := range l.pool.Endpoints {
		fresh := ep.Metrics().Fresh(now, staleness)
		if !fresh {
			s.StaleEndpoints++
		}
		s.Endpoints = append(s.Endpoints, EndpointStats{
			Addr: ep.Addr, Picks: count(&ep.picks), ScrapeErrors: count(&ep.scrapeErrors),
			InFlight: ep.InFlight(), Fresh: fresh,
		})
	}
	// Pool counters after the endpoints': a fail-open is counted before its
	// pick, so every pick read here has its fail-open read too.
	c := &l.st.counters
	s.Sheds, s.FailOpens, s.ScrapeErrors = count(&c.Sheds), count(&c.FailOpens), count(&c.ScrapeErrors)
	s.ScrapesSkipped = count(&c.ScrapesSkipped)
	sh := l.st.share
	s.Shared = SharedStats{
		Connected:      sh.Connected(),
		PlacementsSent: count(&sh.PlacementsSent), PlacementsReceived: count(&sh.PlacementsReceived),
		PlacementsUnmatched: count(&sh.PlacementsUnmatched), PlacementsDropped: count(&sh.PlacementsDropped),
		SnapshotsSent: count(&sh.SnapshotsSent), SnapshotsReceived: count(&sh.SnapshotsReceived),
		WantsSent: count(&sh.WantsSent), WantsAnswered: count(&sh.WantsAnswered),
	}
	return s
}

// Retained counts the pools and endpoints m keeps state for: those some
// live lease names, so churn leaves nothing behind.
func (m *Manager) Retained() (pools, endpoints int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range m.pools {
		endpoints += len(st.members)
	}
	return len(m.pools), endpoints
}

// Close releases nothing by itself; it stops every scraper, for tests and
// process shutdown. Leases stay valid but their pools stop updating.
func (m *Manager) Close() {
	var waits []chan struct{}
	m.mu.Lock()
	for _, st := range m.pools {
		if done := st.stopSharing(); done != nil {
			waits = append(waits, done)
		}
		for _, mb := range st.members {
			if mb.stop != nil {
				mb.stop()
				waits = append(waits, mb.done)
				mb.stop = nil
			}
		}
	}
	m.mu.Unlock()
	for _, d := range waits {
		<-d
	}
}
