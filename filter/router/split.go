package router

import (
	"encoding/json"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/split"
)

// newSplit compiles a model's backend refs, retaining the health of each
// backend that takes traffic; nil for a model without refs. Validate made
// sure some ref has weight and the names encode.
func (r *Router) newSplit(m config.Model) *split.Split {
	var refs []split.Ref
	for _, br := range m.BackendRefs {
		if br.EffectiveWeight() == 0 {
			continue // takes no traffic, as in Gateway API
		}
		served := br.Model
		if served == "" {
			served = m.Name
		}
		quoted, _ := json.Marshal(served)
		refs = append(refs, split.Ref{Backend: br.Backend, Served: served, Quoted: quoted,
			Weight: br.EffectiveWeight(), Priority: br.Priority, Health: r.health.Retain(br.Backend)})
	}
	if len(refs) == 0 {
		return nil
	}
	return split.New(refs)
}
