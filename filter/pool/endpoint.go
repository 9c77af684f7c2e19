// Package pool holds the runtime state of model-server pools: endpoints and
// what this Envoy knows about them (in-flight counts, scraped metrics, an
// approximate prefix-cache index). Pools are immutable snapshots; per
// endpoint counters and metrics are atomics, so the request path takes no
// lock beyond the prefix index's striped, single-access shard locks.
package pool

import "sync/atomic"

// Endpoint is one model server. The same *Endpoint is reused across config
// updates that keep its address, so counters survive them.
type Endpoint struct {
	Addr string

	inFlight atomic.Int64
	// picks counts how often the scheduler chose e as primary.
	picks Counter
	// scrapeErrors counts failed /metrics scrapes of e.
	scrapeErrors Counter
	// metrics is the latest scrape, replaced whole so readers never see a
	// half-written one; nil until the first successful scrape.
	metrics atomic.Pointer[Metrics]
	// slot is 1 + e's small integer id in its pool's prefix index, assigned
	// by the Manager while e is retained; 0 (the zero value) when it has none.
	slot atomic.Int32
	// fb is what responses told about e (feedback.go).
	fb          feedback
	loadReports atomic.Uint64
}

// InFlight is the number of requests this Envoy has sent to the endpoint
// that have not finished yet.
func (e *Endpoint) InFlight() int64 { return e.inFlight.Load() }

// Acquire records a request sent to e; call Release exactly once when the
// stream ends, however it ends.
func (e *Endpoint) Acquire() { e.inFlight.Add(1) }

// Release undoes Acquire.
func (e *Endpoint) Release() { e.inFlight.Add(-1) }

// Metrics returns the latest scraped metrics, or nil before the first
// successful scrape. The result is immutable.
func (e *Endpoint) Metrics() *Metrics { return e.metrics.Load() }

// SetMetrics publishes a new scrape result. m must not be modified after.
func (e *Endpoint) SetMetrics(m *Metrics) { e.metrics.Store(m) }

// Picks is how many times the scheduler chose e as the primary endpoint.
func (e *Endpoint) Picks() uint64 { return e.picks.Load() }

// CountPick records that the scheduler chose e as the primary endpoint.
func (e *Endpoint) CountPick() { e.picks.Add(1) }

// ScrapeErrors is how many /metrics scrapes of e have failed.
func (e *Endpoint) ScrapeErrors() uint64 { return e.scrapeErrors.Load() }

// Slot is e's id in its pool's prefix index, or -1 when e is not retained
// by a Manager (then prefix scoring ignores it).
func (e *Endpoint) Slot() int { return int(e.slot.Load()) - 1 }
