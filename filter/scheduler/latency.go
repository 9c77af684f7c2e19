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

var _ Filter = LatencyOutlierFilter{}

// Outlier thresholds: an endpoint whose responses take twice the pool's
// median time to first token, and at least 100 ms more, is not a
// candidate while others are. Both must hold, so a pool whose endpoints
// are all fast (10 ms vs 25 ms) or all equally loaded ejects nobody.
const (
	outlierFactor = 2.0
	outlierMargin = 0.1 // seconds
)

// LatencyOutlierFilter drops endpoints whose observed time to first token
// is far above the candidates' median (outlierFactor and outlierMargin).
// Weighing latency alone cannot move traffic off such an endpoint when its
// queue is shorter or it holds a request's prefix: the scorers' other
// points outweigh it. As an observation ages its excess over the median
// fades (halving every HalfLife), so an ejected endpoint is probed again
// and comes back once it is fast. It keeps every candidate rather than
// none, and ejects nobody when the pool is saturated: then it needs every
// endpoint's capacity, a slow one's too.
type LatencyOutlierFilter struct {
	HalfLife time.Duration
}

// Filter implements Filter.
func (f LatencyOutlierFilter) Filter(c *Cycle, cands []Candidate) []Candidate {
	if c.Saturated {
		return cands
	}
	ttft := c.floats(&c.latTTFT, len(cands))
	obs := c.floats(&c.latTPOT, len(cands))[:0]
	for i, cd := range cands {
		l, ok := cd.Endpoint.Latency(c.Now)
		if !ok || l.TTFT <= 0 {
			ttft[i] = -1
			continue
		}
		ttft[i] = l.TTFT
		obs = append(obs, l.TTFT)
	}
	if len(obs) < 2 {
		return cands
	}
	med := median(obs)
	kept := cands[:0:len(cands)]
	for i, cd := range cands {
		if ttft[i] > 0 {
			l, _ := cd.Endpoint.Latency(c.Now)
			excess := (ttft[i] - med) * math.Exp2(-l.Age.Seconds()/f.HalfLife.Seconds())
			if t := med + excess; t > outlierFactor*med && t > med+outlierMargin {
				continue
			}
		}
		kept = append(kept, cd)
	}
	if len(kept) == 0 {
		return cands
	}
	return kept
}

// median sorts v in place (insertion sort: v is a pool's size) and returns
// its median.
func median(v []float64) float64 {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
