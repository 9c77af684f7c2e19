// Package scheduler picks the model-server endpoint for a request, the way
// the Gateway API Inference Extension's Endpoint Picker does: filters narrow
// the endpoints, weighted scorers (each in [0,1]) rank them, and a max-score
// picker chooses the primary and an ordered fallback list. It runs on the
// request path inside Envoy, so a pick does no I/O and allocates nothing in
// steady state; it reads endpoint state that package pool keeps current.
package scheduler

import (
	"errors"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
)

// Errors Pick returns; the filter maps them to HTTP statuses.
var (
	// ErrSaturated: the request is sheddable (priority < 0) and no endpoint
	// is under the saturation thresholds. -> 429.
	ErrSaturated = errors.New("scheduler: pool is saturated")
	// ErrNoEndpoints: the pool has no endpoint to send to. -> 503.
	ErrNoEndpoints = errors.New("scheduler: no endpoint available")
)

// Input is what a pick needs to know about a request. Nothing in it is
// retained after Pick returns.
type Input struct {
	// Model is the served model name after any rewrite; for a LoRA adapter
	// it is the adapter name.
	Model string
	// Prompt holds raw JSON spans of the body that make up the prompt, in
	// order (chat: the messages array; Anthropic: system then messages;
	// completions: prompt). They are hashed as one stream.
	Prompt [][]byte
	// CacheSalt separates prefix caches (e.g. per tenant); may be empty.
	CacheSalt string
	// SessionKey is the session header's value; may be empty.
	SessionKey string
	// Priority comes from config.Config.PriorityFor; < 0 is sheddable.
	Priority int
}

// Result receives a pick. Reuse one per request and pass Endpoints with
// capacity to keep Pick allocation-free.
type Result struct {
	// Endpoints are the chosen endpoint then up to Fallbacks next best, in
	// order. The caller calls Acquire on Endpoints[0] when it sends the
	// request and Release when the stream ends.
	Endpoints []*pool.Endpoint
	// FailOpen is set when no endpoint had fresh metrics and the pick fell
	// back to least-in-flight.
	FailOpen bool
	// Saturated is set when no endpoint was under the saturation thresholds.
	Saturated bool
	// PromptBlocks is the number of prompt blocks hashed and PrefixBlocks
	// how many leading ones the primary is believed to have cached.
	PromptBlocks, PrefixBlocks int
}

// Filter narrows the candidates. It compacts cands in place and returns the
// kept prefix; filters here keep every candidate rather than none, so a
// pick always has someone to send to.
type Filter interface {
	Filter(c *Cycle, cands []Candidate) []Candidate
}

// Scorer writes a score in [0,1] per candidate into out (len(out) ==
// len(cands)); higher is better.
type Scorer interface {
	Score(c *Cycle, cands []Candidate, out []float64)
}

type weighted struct {
	Scorer
	weight float64
}

// Scheduler picks endpoints of one pool for one config. Build it with New
// (or Open for a whole config); it is safe for concurrent use.
type Scheduler struct {
	lease     *pool.Lease
	pool      *pool.Pool
	session   string
	counters  *pool.Counters
	staleness time.Duration
	fallbacks int
	adapters  map[string]bool
	feedback  Feedback

	filters []Filter
	scorers []weighted
	prefix  *PrefixScorer // nil when prefix scoring is off
	picker  MaxScorePicker
}

// New builds the scheduler for the pool held by lease with settings s
// (config.Scheduler.Resolve()).
func New(lease *pool.Lease, s config.ResolvedScheduler) *Scheduler {
	p := lease.Pool()
	sc := &Scheduler{
		lease:     lease,
		pool:      p,
		counters:  lease.Counters(),
		session:   s.SessionHeader,
		staleness: s.Staleness,
		fallbacks: s.Fallbacks,
		adapters:  make(map[string]bool, len(s.LoRAAdapters)),
		feedback:  Feedback{Cooldown: s.Cooldown, MaxCooldown: s.MaxCooldown, LoadReports: s.LoadReports},
		filters: []Filter{
			CooldownFilter{},
			&SaturationFilter{QueueDepth: s.QueueDepth, KVCacheUsage: s.KVCacheUsage},
			LoRAFilter{},
		},
	}
	if s.Weights.Latency > 0 {
		sc.filters = append(sc.filters, LatencyOutlierFilter{HalfLife: s.LatencyHalfLife})
	}
	for _, a := range s.LoRAAdapters {
		sc.adapters[a] = true
	}
	add := func(w float64, sr Scorer) {
		if w > 0 {
			sc.scorers = append(sc.scorers, weighted{sr, w})
		}
	}
	w := s.Weights
	add(w.Queue, QueueScorer{})
	add(w.KVCache, KVCacheScorer{})
	if w.Prefix > 0 {
		sc.prefix = &PrefixScorer{Index: lease.Prefix(), Sharing: lease.Sharing(), BlockChars: s.BlockChars, MaxBlocks: s.MaxBlocks}
		add(w.Prefix, sc.prefix)
	}
	add(w.LoRA, LoRAScorer{})
	add(w.InFlight, InFlightScorer{})
	add(w.Session, NewSessionScorer(p.Endpoints))
	add(w.Latency, LatencyScorer{HalfLife: s.LatencyHalfLife})
	add(w.Placement, NewPlacementScorer(p.Endpoints)) // after the prefix scorer: it reuses the prompt's hashes
	return sc
}

// Feedback is how a response's outcome feeds back into picks.
type Feedback struct {
	// Cooldown and MaxCooldown bound how long a failed endpoint sits out
	// (pool.Endpoint.Fail).
	Cooldown, MaxCooldown time.Duration
	// LoadReports: ask the server for per-response load reports.
	LoadReports bool
}

// Feedback returns the pool's feedback settings.
func (s *Scheduler) Feedback() Feedback { return s.feedback }

// SessionHeader is the lower-case name of the header whose value is
// Input.SessionKey, or "" when session affinity is off.
func (s *Scheduler) SessionHeader() string { return s.session }

// SharesState reports whether the config names a state relay for the pool.
func (s *Scheduler) SharesState() bool { return s.lease.Relay() != "" }

// Pool is the endpoint snapshot the scheduler picks from.
func (s *Scheduler) Pool() *pool.Pool { return s.pool }

// Prefix is the pool's prefix index (shared by every config on the pool).
func (s *Scheduler) Prefix() *pool.PrefixIndex { return s.lease.Prefix() }

// Stats reads the pool's counters and endpoint states (pool.Lease.Stats).
func (s *Scheduler) Stats(now time.Time) pool.Stats { return s.lease.Stats(now) }

// Export is Stats with counters as increments since the last export
// (pool.Lease.Export), for the filter's Envoy stats exporter.
func (s *Scheduler) Export(now time.Time) pool.Stats { return s.lease.Export(now) }

// Pick chooses endpoints for in into out. It returns ErrSaturated or
// ErrNoEndpoints (out.Endpoints then empty), else nil with at least one
// endpoint. It records the primary in the prefix index and counts the
// pick; it does not Acquire.
func (s *Scheduler) Pick(in *Input, out *Result) error {
	*out = Result{Endpoints: out.Endpoints[:0]}
	eps := s.pool.Endpoints
	if len(eps) == 0 {
		return ErrNoEndpoints
	}
	c := cyclePool.Get().(*Cycle)
	defer c.release()
	c.reset(in)

	cands := c.cands[:0]
	for i, ep := range eps {
		if m := ep.Metrics(); m.Fresh(c.Now, s.staleness) {
			cands = append(cands, Candidate{Endpoint: ep, Metrics: m, Index: i})
		}
	}
	c.cands = cands
	if len(cands) == 0 {
		s.failOpen(c, out)
		return nil
	}
	c.Adapter = s.isAdapter(in.Model, cands)
	for _, f := range s.filters {
		cands = f.Filter(c, cands)
	}
	out.Saturated = c.Saturated
	if c.Saturated && in.Priority < 0 {
		s.counters.Sheds.Add(1)
		return ErrSaturated
	}
	totals := c.floats(&c.totals, len(cands))
	scores := c.floats(&c.scores, len(cands))
	for _, ws := range s.scorers {
		ws.Score(c, cands, scores)
		for i, v := range scores {
			totals[i] += ws.weight * v
		}
	}
	out.Endpoints = s.picker.Pick(cands, totals, s.fallbacks+1, out.Endpoints)
	primary := out.Endpoints[0]
	primary.CountPick()
	if s.prefix != nil {
		out.PromptBlocks = len(c.hashes)
		out.PrefixBlocks = s.prefix.Record(c, primary)
	}
	return nil
}

// failOpen picks by least requests in flight from this Envoy, the one
// signal that needs no scrape.
func (s *Scheduler) failOpen(c *Cycle, out *Result) {
	s.counters.FailOpens.Add(1)
	out.FailOpen = true
	cands := c.cands[:0]
	for i, ep := range s.pool.Endpoints {
		cands = append(cands, Candidate{Endpoint: ep, Index: i})
	}
	c.cands = cands
	scores := c.floats(&c.scores, len(cands))
	for i, cd := range cands {
		scores[i] = -float64(cd.Endpoint.InFlight())
		if cd.Endpoint.CoolingDown(c.Now) {
			scores[i] -= coolingPenalty // only if every endpoint cools down
		}
	}
	out.Endpoints = s.picker.Pick(cands, scores, s.fallbacks+1, out.Endpoints)
	out.Endpoints[0].CountPick()
}

// coolingPenalty ranks an endpoint cooling down after every one that is
// not, whatever their in-flight counts.
const coolingPenalty = 1 << 40

// isAdapter reports whether model is a LoRA adapter: configured as one, or
// reported running or waiting by a candidate.
func (s *Scheduler) isAdapter(model string, cands []Candidate) bool {
	if s.adapters[model] {
		return true
	}
	for _, cd := range cands {
		if !cd.Metrics.HasLoRA {
			continue
		}
		if r, w := cd.Metrics.HasAdapter(model); r || w {
			return true
		}
	}
	return false
}

// addrHash is the session scorer's per-endpoint hash.
func addrHash(addr string) uint64 { return xxhash.Sum64String(addr) }
