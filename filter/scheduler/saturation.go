package scheduler

var _ Filter = (*SaturationFilter)(nil)

// SaturationFilter keeps the candidates that can take more work: waiting
// requests <= QueueDepth and KV-cache usage <= KVCacheUsage. When none can,
// the pool is saturated (the EPP's saturation detector): it marks the cycle
// so sheddable requests get 429, and keeps every candidate for the rest.
type SaturationFilter struct {
	QueueDepth   float64
	KVCacheUsage float64
}

// Filter implements Filter.
func (f *SaturationFilter) Filter(c *Cycle, cands []Candidate) []Candidate {
	kept := cands[:0:len(cands)]
	for _, cd := range cands {
		if cd.Metrics.Waiting <= f.QueueDepth && cd.Metrics.KVCacheUsage <= f.KVCacheUsage {
			kept = append(kept, cd)
		}
	}
	if len(kept) == 0 {
		c.Saturated = true
		return cands
	}
	return kept
}
