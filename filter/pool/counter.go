package pool

import "sync/atomic"

// Counter is a monotonic event count of a pool or an endpoint, kept with the
// pool state so it lives exactly as long as what it counts.
//
// Envoy's stats take increments, and while Envoy replaces a config two
// exporters (the old config's and the new one's) read the same counters.
// So a Counter also remembers how much of it has been exported, and
// TakeUnexported hands every increment to exactly one caller: nothing is
// kept per exporter, and nothing outlives the counter.
type Counter struct {
	total, exported atomic.Uint64
}

// Add counts n more events.
func (c *Counter) Add(n uint64) { c.total.Add(n) }

// Load is the number of events counted.
func (c *Counter) Load() uint64 { return c.total.Load() }

// TakeUnexported returns what the counter gained since the previous call,
// by any caller, and marks it exported.
func (c *Counter) TakeUnexported() uint64 {
	for {
		prev, total := c.exported.Load(), c.total.Load()
		if total <= prev {
			return 0
		}
		// A plain Swap could move the mark backwards when a caller that
		// loaded an older total swaps last, and the next call would then
		// hand out the same increments again.
		if c.exported.CompareAndSwap(prev, total) {
			return total - prev
		}
	}
}
