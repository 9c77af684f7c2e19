package scheduler

import (
	"github.com/cespare/xxhash/v2"

	"github.com/inflow-gateway/inflow/filter/pool"
)

var _ Scorer = (*SessionScorer)(nil)

// SessionScorer keeps a session on one endpoint: it gives 1 to the
// candidate that wins rendezvous (highest-random-weight) hashing of the
// session key, 0 to the others. Rendezvous hashing needs no shared table,
// so every Envoy replica agrees on the endpoint without talking to the
// others; when the winner is filtered out (stale, saturated) the session
// moves to the next in its own stable order, and an endpoint leaving the
// pool moves only its own sessions.
type SessionScorer struct {
	addrHash []uint64 // by pool index
}

// NewSessionScorer precomputes the endpoints' hashes.
func NewSessionScorer(eps []*pool.Endpoint) *SessionScorer {
	s := &SessionScorer{addrHash: make([]uint64, len(eps))}
	for i, ep := range eps {
		s.addrHash[i] = addrHash(ep.Addr)
	}
	return s
}

// Score implements Scorer.
func (s *SessionScorer) Score(c *Cycle, cands []Candidate, out []float64) {
	clear(out)
	if c.Input.SessionKey == "" {
		return
	}
	key := xxhash.Sum64String(c.Input.SessionKey)
	best, bestW := -1, uint64(0)
	for i, cd := range cands {
		if w := mix64(key ^ s.addrHash[cd.Index]); best < 0 || w > bestW {
			best, bestW = i, w
		}
	}
	out[best] = 1
}

// mix64 is SplitMix64's finaliser: a bijection that spreads every input bit
// over the output, so XOR-combined hashes rank endpoints independently.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
