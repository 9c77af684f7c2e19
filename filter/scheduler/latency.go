package scheduler

import (
	"math"
	"time"
)

var _ Scorer = LatencyScorer{}

// LatencyScorer prefers endpoints whose real responses were fast: the
// moving averages of time to first token and time per output token that
// this Envoy observed (pool.Endpoint.ObserveLatency). Scraped queues
// cannot see an endpoint that is slow for other reasons (a degraded GPU, a
// noisy neighbour, a bad node); responses can. Each signal scores
// best/own among the candidates that have it, so endpoints within a few
// percent score about the same and one twice as slow scores 0.5; the two
// scores are averaged. An observation's pull fades with its age (halving
// every HalfLife), so an endpoint that lost its traffic for being slow is
// probed again; one with no observation scores 1.
type LatencyScorer struct {
	HalfLife time.Duration
}

// Score implements Score.
func (s LatencyScorer) Score(c *Cycle, cands []Candidate, out []float64) {
	ttft := c.floats(&c.latTTFT, len(cands))
	tpot := c.floats(&c.latTPOT, len(cands))
	bestTTFT, bestTPOT := math.Inf(1), math.Inf(1)
	for i, cd := range cands {
		l, ok := cd.Endpoint.Latency(c.Now)
		if !ok {
			continue
		}
		w := math.Exp2(-l.Age.Seconds() / s.HalfLife.Seconds())
		if l.TTFT > 0 {
			ttft[i] = l.TTFT
			bestTTFT = min(bestTTFT, l.TTFT)
		}
		if l.TPOT > 0 {
			tpot[i] = l.TPOT
			bestTPOT = min(bestTPOT, l.TPOT)
		}
		out[i] = w // the observation's weight, until the scores are known
	}
	for i := range cands {
		w := out[i]
		a, na := ratio(bestTTFT, ttft[i])
		b, nb := ratio(bestTPOT, tpot[i])
		score := 1.0
		if na+nb > 0 {
			score = (a + b) / float64(na+nb)
		}
		// Fade towards 1 as the observation ages.
		out[i] = 1 - w*(1-score)
	}
}

// ratio is best/v for an observed v (count 1), or nothing (count 0).
func ratio(best, v float64) (float64, int) {
	if v <= 0 || math.IsInf(best, 1) {
		return 0, 0
	}
	return best / v, 1
}
