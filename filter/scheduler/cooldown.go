package scheduler

var _ Filter = CooldownFilter{}

// CooldownFilter drops endpoints cooling down after a failed request
// (pool.Endpoint.Fail). When every candidate is cooling down it keeps them
// all: a pick always has someone to send to.
type CooldownFilter struct{}

// Filter implements Filter.
func (CooldownFilter) Filter(c *Cycle, cands []Candidate) []Candidate {
	kept := cands[:0:len(cands)]
	for _, cd := range cands {
		if !cd.Endpoint.CoolingDown(c.Now) {
			kept = append(kept, cd)
		}
	}
	if len(kept) == 0 {
		return cands
	}
	return kept
}
