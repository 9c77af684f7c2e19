package scheduler

var _ Scorer = KVCacheScorer{}

// KVCacheScorer prefers free KV cache: 1 - usage (the EPP's
// kv-cache-utilization-scorer).
type KVCacheScorer struct{}

// Score implements Scorer.
func (KVCacheScorer) Score(_ *Cycle, cands []Candidate, out []float64) {
	for i, cd := range cands {
		out[i] = 1 - min(max(cd.Metrics.KVCacheUsage, 0), 1)
	}
}
