package scheduler

var _ Scorer = InFlightScorer{}

// InFlightScorer prefers endpoints with fewer requests in flight from this
// Envoy, normalised like the queue scorer. Only an in-process picker sees
// this number: it moves on every pick, while scraped queues are up to a
// scrape interval old, so it spreads bursts that arrive between scrapes.
type InFlightScorer struct{}

// Score implements Scorer.
func (InFlightScorer) Score(_ *Cycle, cands []Candidate, out []float64) {
	// Read each counter once: they move under us.
	for i, cd := range cands {
		out[i] = float64(cd.Endpoint.InFlight())
	}
	normalizeLowIsBest(out)
}
