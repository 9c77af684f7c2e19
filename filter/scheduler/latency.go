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
// ref/own, at most 1, where ref is the best candidate's plus
// latencyTolerance of it: endpoints within that of the best all score 1,
// so the scorer does not chase whichever was fastest lately (observed
// latency includes queueing, which the queue and in-flight scorers already
// weigh, and lags it: chasing it herds requests onto one endpoint), while
// one five times as slow as the best scores 0.25. The two scores are
// averaged. An endpoint the outlier filter kept for its short queue
// (LatencyOutlierFilter) is not scored on its TTFT again: the filter
// already weighed it against the queues. An observation's pull fades with its age (halving every
// HalfLife), so an endpoint that lost its traffic for being slow is probed
// again; one with no observation scores 1.
type LatencyScorer struct {
	HalfLife time.Duration
}

// latencyTolerance is how far above the best an observed latency still
// scores 1.
const latencyTolerance = 0.25

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
		if l.TTFT > 0 && !cd.slowButWorthIt {
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
		a, na := ratio((1+latencyTolerance)*bestTTFT, ttft[i])
		b, nb := ratio((1+latencyTolerance)*bestTPOT, tpot[i])
		score := 1.0
		if na+nb > 0 {
			score = (a + b) / float64(na+nb)
		}
		// Fade towards 1 as the observation ages.
		out[i] = 1 - w*(1-score)
	}
}

// ratio is min(1, ref/v) for an observed v (count 1), or nothing (count 0).
func ratio(ref, v float64) (float64, int) {
	if v <= 0 || math.IsInf(ref, 1) {
		return 0, 0
	}
	return min(1, ref/v), 1
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
// is far above the candidates' median (outlierFactor and outlierMargin)
// unless their queue makes up for it. Weighing latency alone cannot move
// traffic off such an endpoint when its queue is shorter or it holds a
// request's prefix: the scorers' other points outweigh it. As an
// observation ages its excess over the median fades (halving every
// HalfLife), so an ejected endpoint is probed again and comes back once it
// is fast. It keeps every candidate rather than none.
//
// A slow endpoint is still the better choice when the others' queues would
// delay a request more than its excess does, and a busy pool needs its
// capacity: so an outlier stays a candidate when its waiting count plus
// its excess in waiting requests is below the shortest queue of the
// others. A waiting request waits for a running one to finish: it is
// worth the median response duration (sent to last byte, observed) over
// the median running count, at least one; before any duration is
// observed, the median TTFT over one plus the median waiting count. When
// the pool is saturated, queueing inflates the median, so the
// twice-the-median rule would no longer see a fixed excess: then any
// excess above outlierMargin counts, and the queues decide.
type LatencyOutlierFilter struct {
	HalfLife time.Duration
}

// Filter implements Filter.
func (f LatencyOutlierFilter) Filter(c *Cycle, cands []Candidate) []Candidate {
	excess := c.floats(&c.latTTFT, len(cands))
	obs := c.floats(&c.latTPOT, len(cands))[:0]
	for i, cd := range cands {
		l, ok := cd.Endpoint.Latency(c.Now)
		if !ok || l.TTFT <= 0 {
			excess[i] = math.NaN()
			continue
		}
		excess[i] = l.TTFT
		obs = append(obs, l.TTFT)
	}
	if len(obs) < 2 {
		return cands
	}
	med := median(obs)
	for i, cd := range cands {
		if !math.IsNaN(excess[i]) {
			l, _ := cd.Endpoint.Latency(c.Now)
			excess[i] = (excess[i] - med) * math.Exp2(-l.Age.Seconds()/f.HalfLife.Seconds())
		}
	}
	outlier := func(i int) bool {
		e := excess[i] // NaN (unobserved) compares false
		return e > outlierMargin && (c.Saturated || e > (outlierFactor-1)*med)
	}
	shortest := math.Inf(1) // among the endpoints that are not outliers
	for i, cd := range cands {
		if !outlier(i) {
			shortest = min(shortest, cd.Metrics.Waiting)
		}
	}
	perWaiting := waitingCost(c, cands, med, obs[:0])
	kept := cands[:0:len(cands)]
	for i, cd := range cands {
		if outlier(i) {
			if cd.Metrics.Waiting+excess[i]/perWaiting >= shortest {
				continue
			}
			cd.slowButWorthIt = true
		}
		kept = append(kept, cd)
	}
	if len(kept) == 0 {
		return cands
	}
	return kept
}

// waitingCost is what one waiting request adds to a time to first token,
// in seconds: the median observed response duration over the median
// running count (at least one), or, before any duration is observed,
// medTTFT over one plus the median waiting count. scratch has room for
// len(cands) values.
func waitingCost(c *Cycle, cands []Candidate, medTTFT float64, scratch []float64) float64 {
	durations := scratch
	for _, cd := range cands {
		if l, ok := cd.Endpoint.Latency(c.Now); ok && l.Duration > 0 {
			durations = append(durations, l.Duration)
		}
	}
	if len(durations) > 0 {
		d := median(durations)
		running := scratch[:0]
		for _, cd := range cands {
			running = append(running, cd.Metrics.Running)
		}
		return d / max(1, median(running))
	}
	waiting := scratch[:0]
	for _, cd := range cands {
		waiting = append(waiting, cd.Metrics.Waiting)
	}
	return medTTFT / (1 + median(waiting))
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
