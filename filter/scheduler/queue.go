package scheduler

var _ Scorer = QueueScorer{}

// QueueScorer prefers short queues: (max - q) / (max - min) over the
// candidates' waiting requests, 1 for all when they are equal (the EPP's
// queue-scorer).
type QueueScorer struct{}

// Score implements Scorer.
func (QueueScorer) Score(_ *Cycle, cands []Candidate, out []float64) {
	for i, cd := range cands {
		out[i] = cd.Metrics.Waiting
	}
	normalizeLowIsBest(out)
}

// normalizeLowIsBest maps v in place to (max - v) / (max - min), or 1 when
// all are equal.
func normalizeLowIsBest(v []float64) {
	if len(v) == 0 {
		return
	}
	lo, hi := v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	if hi == lo {
		for i := range v {
			v[i] = 1
		}
		return
	}
	for i, x := range v {
		v[i] = (hi - x) / (hi - lo)
	}
}
