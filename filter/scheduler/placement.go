package scheduler

import (
	"github.com/inflow-gateway/inflow/filter/pool"
)

var _ Scorer = (*PlacementScorer)(nil)

// PlacementScorer makes replicas that share nothing agree on where a
// prompt's prefix goes: each candidate scores its rendezvous
// (highest-random-weight) hash of the prompt's first block (model, cache
// salt and the first block of text), a number in [0,1) that every replica
// computes alike. Prompts that start alike (one application's system
// prompt) prefer the same few endpoints on every replica, and the load
// scorers spread them when those fill up, as consistent hashing with
// bounded load does. Unlike a table of who holds what, it needs nothing
// from the other replicas; unlike the shared prefix index (a relay), it
// knows nothing of where a conversation actually went. Off by default
// (weight 0); bench-sched compares it with the relay.
type PlacementScorer struct {
	addrHash []uint64 // by pool index
}

// NewPlacementScorer precomputes the endpoints' hashes.
func NewPlacementScorer(eps []*pool.Endpoint) *PlacementScorer {
	s := &PlacementScorer{addrHash: make([]uint64, len(eps))}
	for i, ep := range eps {
		s.addrHash[i] = addrHash(ep.Addr)
	}
	return s
}

// Score implements Scorer. It runs after the prefix scorer, which hashes
// the prompt; a prompt shorter than a block (or no prefix scorer) places
// by model and salt alone.
func (s *PlacementScorer) Score(c *Cycle, cands []Candidate, out []float64) {
	key := seedHash(c.Input.Model, c.Input.CacheSalt)
	if len(c.hashes) > 0 {
		key = c.hashes[0]
	}
	for i, cd := range cands {
		out[i] = float64(mix64(key^s.addrHash[cd.Index])>>11) / (1 << 53)
	}
}
