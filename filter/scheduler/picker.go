package scheduler

import (
	"math/rand/v2"

	"github.com/inflow-gateway/inflow/filter/pool"
)

// MaxScorePicker picks the highest total score, then the next best as
// fallbacks, in one pass over the candidates. Ties break at random: a
// candidate that could enter the top n draws a random key from
// math/rand/v2's top-level functions, whose source is per thread (no lock,
// no new rand per pick), and equal scores are ordered by key, so every
// order of tied candidates is equally likely. The candidates are never
// reordered.
type MaxScorePicker struct{}

type ranked struct {
	score float64
	key   uint64
	idx   int
}

// maxRanked covers config.MaxFallbacks+1 without allocating.
const maxRanked = 17

// Pick appends up to n endpoints of cands to out, best first.
func (MaxScorePicker) Pick(cands []Candidate, scores []float64, n int, out []*pool.Endpoint) []*pool.Endpoint {
	n = min(n, len(cands))
	if n <= 0 {
		return out
	}
	var buf [maxRanked]ranked
	top := buf[:0]
	if n > maxRanked {
		top = make([]ranked, 0, n)
	}
	for i, s := range scores {
		if len(top) == n && s < top[n-1].score {
			continue // cannot enter: no random draw needed
		}
		r := ranked{score: s, key: rand.Uint64(), idx: i}
		if len(top) == n {
			if !r.beats(top[n-1]) {
				continue
			}
			top = top[:n-1]
		}
		// Insertion sort: n is small.
		j := len(top)
		top = append(top, r)
		for ; j > 0 && r.beats(top[j-1]); j-- {
			top[j] = top[j-1]
		}
		top[j] = r
	}
	for _, r := range top {
		out = append(out, cands[r.idx].Endpoint)
	}
	return out
}

func (a ranked) beats(b ranked) bool {
	return a.score > b.score || a.score == b.score && a.key > b.key
}
