package scheduler

var (
	_ Filter = LoRAFilter{}
	_ Scorer = LoRAScorer{}
)

// LoRAFilter, for a request to a LoRA adapter, keeps the endpoints that
// have the adapter running or waiting, or room to load it (fewer active
// adapters than max_lora). When none qualify it keeps all: the servers
// queue adapter loads themselves. Requests to base models pass through.
type LoRAFilter struct{}

// Filter implements Filter.
func (LoRAFilter) Filter(c *Cycle, cands []Candidate) []Candidate {
	if !c.Adapter {
		return cands
	}
	kept := cands[:0:len(cands)]
	for _, cd := range cands {
		if loraAffinity(cd, c.Input.Model) > 0 {
			kept = append(kept, cd)
		}
	}
	if len(kept) == 0 {
		return cands
	}
	return kept
}

// LoRAScorer scores adapter affinity like the EPP's lora-affinity-scorer:
// 1 adapter running, 0.8 room to load it, 0.6 adapter waiting, else 0.
// Base-model requests score 0 everywhere, which changes no ranking.
type LoRAScorer struct{}

// Score implements Scorer.
func (LoRAScorer) Score(c *Cycle, cands []Candidate, out []float64) {
	for i, cd := range cands {
		out[i] = 0
		if c.Adapter {
			out[i] = loraAffinity(cd, c.Input.Model)
		}
	}
}

func loraAffinity(cd Candidate, adapter string) float64 {
	m := cd.Metrics
	if !m.HasLoRA {
		return 0
	}
	running, waiting := m.HasAdapter(adapter)
	switch {
	case running:
		return 1
	case len(m.RunningLoRA)+len(m.WaitingLoRA) < m.MaxLoRA:
		return 0.8
	case waiting:
		return 0.6
	}
	return 0
}
