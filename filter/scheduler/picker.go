package scheduler

import (
	"math"
	"math/rand/v2"

	"github.com/inflow-gateway/inflow/filter/pool"
)

// MaxScorePicker picks the highest total score, then the next best as
// fallbacks. Ties break at random with reservoir sampling on math/rand/v2's
// top-level functions, whose source is per thread: no lock, no new rand per
// pick, and the caller's candidates are never shuffled.
type MaxScorePicker struct{}

var taken = math.Inf(-1)

// Pick appends up to n endpoints of cands to out, best first. It
// overwrites scores (picked entries become -Inf).
func (MaxScorePicker) Pick(cands []Candidate, scores []float64, n int, out []*pool.Endpoint) []*pool.Endpoint {
	for range min(n, len(cands)) {
		best, ties := -1, 0
		for i, s := range scores {
			switch {
			case s == taken:
			case best < 0 || s > scores[best]:
				best, ties = i, 1
			case s == scores[best]:
				ties++
				if rand.IntN(ties) == 0 {
					best = i
				}
			}
		}
		out = append(out, cands[best].Endpoint)
		scores[best] = taken
	}
	return out
}
