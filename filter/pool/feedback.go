package pool

import (
	"math"
	"sync/atomic"
	"time"
)

// What only an in-process picker sees: the latency of real responses and
// the failures of real requests, kept per endpoint in atomics that
// responses on any worker update without a lock.

// latencyAlpha is the weight of a new observation in the moving averages:
// about the last five responses count.
const latencyAlpha = 0.3

// feedback is an endpoint's observed signals.
type feedback struct {
	ttft, tpot atomic.Uint64 // float64 bits, seconds; 0 before the first observation
	duration   atomic.Uint64 // float64 bits, seconds: sent to last byte
	latencyAt  atomic.Int64  // unix ns of the last latency observation
	coolUntil  atomic.Int64  // unix ns until which the endpoint cools down
	failures   atomic.Int32  // consecutive failures
}

// ObserveLatency adds a response's time to first token (from the moment it
// was sent) and, when known, its time per output token.
func (e *Endpoint) ObserveLatency(ttft, tpot time.Duration, hasTPOT bool, now time.Time) {
	e.ObserveTTFT(ttft, now)
	if hasTPOT {
		e.ObserveTPOT(tpot, now)
	}
}

// ObserveTTFT adds a response's time to first token, as soon as its first
// byte is in: the end of a stream is a whole generation later.
func (e *Endpoint) ObserveTTFT(ttft time.Duration, now time.Time) {
	ewma(&e.fb.ttft, ttft.Seconds())
	e.fb.latencyAt.Store(now.UnixNano())
}

// ObserveDuration adds how long a successful response held the endpoint,
// from the moment it was sent to its last byte.
func (e *Endpoint) ObserveDuration(d time.Duration, now time.Time) {
	ewma(&e.fb.duration, d.Seconds())
	e.fb.latencyAt.Store(now.UnixNano())
}

// ObserveTPOT adds a finished response's time per output token.
func (e *Endpoint) ObserveTPOT(tpot time.Duration, now time.Time) {
	ewma(&e.fb.tpot, tpot.Seconds())
	e.fb.latencyAt.Store(now.UnixNano())
}

func ewma(a *atomic.Uint64, x float64) {
	for {
		old := a.Load()
		next := x
		if old != 0 {
			prev := math.Float64frombits(old)
			next = prev + latencyAlpha*(x-prev)
		}
		if next == 0 {
			next = math.SmallestNonzeroFloat64 // 0 means "none yet"
		}
		if a.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// Latency is an endpoint's observed response latency.
type Latency struct {
	TTFT, TPOT float64 // seconds; 0 when never observed
	// Duration is how long a response takes from sent to its last byte
	// (seconds; 0 when never observed).
	Duration float64
	Age      time.Duration
}

// Latency returns the moving averages and how old they are; ok is false
// before the first observation.
func (e *Endpoint) Latency(now time.Time) (l Latency, ok bool) {
	at := e.fb.latencyAt.Load()
	if at == 0 {
		return l, false
	}
	l.TTFT = math.Float64frombits(e.fb.ttft.Load())
	l.TPOT = math.Float64frombits(e.fb.tpot.Load())
	l.Duration = math.Float64frombits(e.fb.duration.Load())
	l.Age = now.Sub(time.Unix(0, at))
	return l, true
}

// Fail records a failed request (a 5xx, a reset, a connect error): the
// endpoint cools down for base, doubled for each consecutive failure, at
// most max.
func (e *Endpoint) Fail(now time.Time, base, max time.Duration) {
	n := e.fb.failures.Add(1)
	d := base
	for i := int32(1); i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	until := now.Add(d).UnixNano()
	for {
		old := e.fb.coolUntil.Load()
		if old >= until || e.fb.coolUntil.CompareAndSwap(old, until) {
			return
		}
	}
}

// Succeed records a successful response: the failure streak ends.
func (e *Endpoint) Succeed() {
	if e.fb.failures.Load() != 0 {
		e.fb.failures.Store(0)
	}
}

// CoolingDown reports whether a recent failure keeps e out of picks.
func (e *Endpoint) CoolingDown(now time.Time) bool {
	return now.UnixNano() < e.fb.coolUntil.Load()
}

// ApplyLoadReport publishes a server's per-response load report: its
// queue and KV-cache numbers replace the scraped ones, and the snapshot
// counts as fresh from now; the rest (running requests, LoRA state, block
// size) stays as last scraped. A concurrent scrape always wins: it
// publishes whole snapshots and this only ever replaces the one it read.
func (e *Endpoint) ApplyLoadReport(r LoadReport, now time.Time) {
	for {
		old := e.metrics.Load()
		m := &Metrics{}
		if old != nil {
			if old.ScrapedAt.After(now) {
				return
			}
			*m = *old
		}
		if r.HasWaiting {
			m.Waiting = r.Waiting
		}
		if r.HasKVCacheUsage {
			m.KVCacheUsage = r.KVCacheUsage
		}
		m.ScrapedAt = now
		if e.metrics.CompareAndSwap(old, m) {
			e.loadReports.Add(1)
			return
		}
	}
}

// LoadReports is how many load reports updated e.
func (e *Endpoint) LoadReports() uint64 { return e.loadReports.Load() }
