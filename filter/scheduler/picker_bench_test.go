package scheduler

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/inflow-gateway/inflow/filter/pool"
)

// threePass is the straightforward picker (one scan per pick), kept as the
// reference BenchmarkPicker compares against.
func threePass(cands []Candidate, scores []float64, n int, out []*pool.Endpoint) []*pool.Endpoint {
	for range min(n, len(cands)) {
		best, ties := -1, 0
		for i, s := range scores {
			switch {
			case math.IsInf(s, -1):
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
		scores[best] = math.Inf(-1)
	}
	return out
}

func BenchmarkPicker(b *testing.B) {
	for _, n := range []int{64, 512} {
		cs := cands(make([]pool.Metrics, n)...)
		base := make([]float64, n)
		for i := range base {
			base[i] = rand.Float64() * 8
		}
		scores := make([]float64, n)
		out := make([]*pool.Endpoint, 0, 3)
		b.Run(fmt.Sprintf("one-pass/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				copy(scores, base)
				out = (MaxScorePicker{}).Pick(cs, scores, 3, out[:0])
			}
		})
		b.Run(fmt.Sprintf("three-pass/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				copy(scores, base)
				out = threePass(cs, scores, 3, out[:0])
			}
		})
	}
}
