package scheduler

import (
	"sync"
	"time"

	"github.com/inflow-gateway/inflow/filter/pool"
)

// Candidate is an endpoint under consideration and the metrics it is
// judged on (never nil, except in a fail-open pick, where no scorer runs).
type Candidate struct {
	Endpoint *pool.Endpoint
	Metrics  *pool.Metrics
	// Index is the endpoint's position in the pool snapshot, for scorers
	// that precompute per-endpoint data.
	Index int
	// slowButWorthIt: the latency outlier filter kept this endpoint
	// although its TTFT is far above the others', because their queues
	// would delay a request more; the latency scorer does not count that
	// excess twice.
	slowButWorthIt bool
}

// Cycle is the state of one pick, shared by its filters and scorers. Its
// buffers are pooled so a pick allocates nothing once they have grown to
// the pool's size.
type Cycle struct {
	Input *Input
	Now   time.Time
	// Saturated is set by SaturationFilter when no candidate is under the
	// thresholds.
	Saturated bool
	// Adapter says the requested model is a LoRA adapter.
	Adapter bool

	hashes []uint64 // prompt block hashes, set by PrefixScorer
	match  pool.PrefixMatch
	block  []byte // one block plus the previous hash, for hashing
	cands  []Candidate
	scores []float64
	totals []float64
	// latency scorer scratch
	latTTFT, latTPOT []float64
}

// cyclePool hands each pick a Cycle. sync.Pool caches per P, so workers on
// different threads do not contend for it.
var cyclePool = sync.Pool{New: func() any { return new(Cycle) }}

func (c *Cycle) reset(in *Input) {
	c.Input, c.Now, c.Saturated, c.Adapter = in, time.Now(), false, false
	c.hashes = c.hashes[:0]
	c.match.Counts = c.match.Counts[:0]
}

// release returns c to the pool without the request: a pooled Cycle must
// not keep a prompt (up to the body limit) alive.
func (c *Cycle) release() {
	c.Input = nil
	cyclePool.Put(c)
}

// floats returns (*buf)[:n] zeroed, growing *buf when needed.
func (c *Cycle) floats(buf *[]float64, n int) []float64 {
	if cap(*buf) < n {
		*buf = make([]float64, n)
	}
	s := (*buf)[:n]
	clear(s)
	return s
}
