package extproc

import (
	"testing"

	"github.com/inflow-gateway/inflow/filter/decide"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/router"
)

// TestRouteMutationNamesTheSplitBackend: a split model's pick reaches
// Envoy's routes in x-inflow-backend, as the filter sets it; no pick, no
// header.
func TestRouteMutationNamesTheSplitBackend(t *testing.T) {
	headers := func(rt *decide.Route) map[string]string {
		m := map[string]string{}
		for _, h := range routeMutation(rt, 0, false).SetHeaders {
			m[h.Header.Key] = string(h.Header.RawValue)
		}
		return m
	}
	rt := &decide.Route{Decision: router.Decision{Model: &router.Model{Name: "gpt"}}, Backend: "azure"}
	if got := headers(rt)[protocol.HeaderBackend]; got != "azure" {
		t.Errorf("x-inflow-backend %q, want azure", got)
	}
	rt.Backend = ""
	if got, ok := headers(rt)[protocol.HeaderBackend]; ok {
		t.Errorf("x-inflow-backend %q set without a split", got)
	}
}
