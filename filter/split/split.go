package split

import (
	"cmp"
	"slices"
	"time"

	"github.com/inflow-gateway/inflow/filter/config"
)

// Ref is one backend a model may go to, with what it is called there.
type Ref struct {
	// Backend names the external backend.
	Backend string
	// Served is the model name the backend sees; Quoted is it as a JSON
	// string, for the body rewrite.
	Served string
	Quoted []byte
	// Weight is the share among refs of the same priority (0: none).
	Weight uint32
	// Priority 0 is used first; a higher one only while every ref of
	// every lower priority is ejected.
	Priority uint32
	// Health is the backend's passive health, shared across configs.
	Health *Health
}

// Split is one model's refs, ordered by priority, immutable once built.
type Split struct {
	refs []Ref
}

// New orders refs by priority (stable: equal priorities keep their order)
// and drops those of weight 0, which take no traffic (as in Gateway API).
// It returns nil when no ref has weight.
func New(refs []Ref) *Split {
	out := make([]Ref, 0, len(refs))
	for _, r := range refs {
		if r.Weight > 0 {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil
	}
	slices.SortStableFunc(out, func(a, b Ref) int { return cmp.Compare(a.Priority, b.Priority) })
	return &Split{refs: out}
}

// Refs are the refs in priority order.
func (s *Split) Refs() []Ref { return s.refs }

// MaxRefs bounds a model's refs, so a pick needs no allocation.
const MaxRefs = config.MaxBackendRefs

// Pick chooses the ref for one request at now, r being a uniform random
// number: by weight among the refs in service of the lowest priority that
// has one. When every ref is ejected it picks among the lowest priority as
// if none were: trying a backend beats failing every request (Envoy's
// outlier detection never ejects a whole cluster either,
// max_ejection_percent).
func (s *Split) Pick(now time.Time, r uint64) *Ref {
	// Each ref's state is read once: another worker may eject one meanwhile.
	var inService [MaxRefs]bool
	refs := s.refs[:min(len(s.refs), MaxRefs)]
	for i := range refs {
		inService[i] = !refs[i].Health.Ejected(now)
	}
	for lo := 0; lo < len(refs); {
		hi := lo
		var total uint64
		for ; hi < len(refs) && refs[hi].Priority == refs[lo].Priority; hi++ {
			if inService[hi] {
				total += uint64(refs[hi].Weight)
			}
		}
		if total > 0 {
			return pick(refs[lo:hi], inService[lo:hi], r%total)
		}
		lo = hi
	}
	first := 0
	var total uint64
	for ; first < len(refs) && refs[first].Priority == refs[0].Priority; first++ {
		total += uint64(refs[first].Weight)
		inService[first] = true
	}
	return pick(refs[:first], inService[:first], r%total)
}

// pick is the ref n falls on when the weights of the refs in use are laid
// end to end (n < their total).
func pick(refs []Ref, use []bool, n uint64) *Ref {
	for i := range refs {
		if !use[i] {
			continue
		}
		w := uint64(refs[i].Weight)
		if n < w {
			return &refs[i]
		}
		n -= w
	}
	panic("split: weights out of range") // unreachable: n < total
}
