package kube

import (
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/filter/cost"
)

// DefaultRequestTimeout is the route timeout of an AIGatewayRoute rule
// that sets no timeouts.request: Envoy AI Gateway's default (60 s, instead
// of Envoy Gateway's 15 s), so routes behave as they did under it.
const DefaultRequestTimeout = 60 * time.Second

// resolve follows d's references: its InferencePool must be servable, and
// each AIServiceBackend resolvable (one that is not is reported and its
// refs dropped; the others keep the traffic). It reports whether anything
// is left to serve.
func (b *builder) resolve(rep *RouteReport, parents []types.NamespacedName, d *ruleDestination) bool {
	if d.pool.Name != "" {
		for _, p := range parents {
			if !slices.Contains(b.parents[d.pool], p) {
				b.parents[d.pool] = append(b.parents[d.pool], p)
			}
		}
		if err := b.usePool(d.pool); err != nil {
			rep.unresolved(d.poolAt, err)
			return false
		}
		return true
	}
	failed := map[types.NamespacedName]bool{}
	kept := d.services[:0:0]
	for _, r := range d.services {
		if failed[r.backend] {
			continue
		}
		if err := b.useBackend(r.backend); err != nil {
			failed[r.backend] = true
			rep.unresolved(r.at, err)
			continue
		}
		kept = append(kept, r)
	}
	d.services = kept
	return len(kept) > 0
}

// ruleTimeout is the route timeout of a rule: timeouts.request, or the AI
// Gateway's default. backendRequest (a per-attempt timeout) is reported:
// Inflow's routes have no per-try timeout.
func ruleTimeout(rep *RouteReport, where string, t *routeTimeouts) string {
	def := DefaultRequestTimeout.String()
	if t == nil {
		return def
	}
	if t.BackendRequest != nil {
		rep.problem("%s.timeouts.backendRequest is not applied (Inflow sets no per-attempt timeout); timeouts.request bounds the whole request", where)
	}
	if t.Request == nil {
		return def
	}
	d, err := time.ParseDuration(*t.Request)
	if err != nil || d < 0 {
		rep.problem("%s.timeouts.request: %q is not a duration; using the default %s", where, *t.Request, def)
		return def
	}
	return d.String()
}

// routeCosts are the route's llmRequestCosts as the filter's costs of each
// of its models; one the filter could not compute (an unknown type, a CEL
// expression that does not compile) is reported and left out, the others
// still written.
func routeCosts(rep *RouteReport, in []llmRequestCost) []cost.Spec {
	var out []cost.Spec
	for i, c := range in {
		s := cost.Spec{MetadataKey: c.MetadataKey, Type: cost.Type(c.Type), CEL: deref(c.CEL, "")}
		if err := s.Check(); err != nil {
			rep.problem("llmRequestCosts[%d]: %v; not written", i, err)
			continue
		}
		if slices.ContainsFunc(out, func(o cost.Spec) bool { return o.MetadataKey == s.MetadataKey }) {
			rep.problem("llmRequestCosts[%d]: metadataKey %q is repeated; the first is written", i, s.MetadataKey)
			continue
		}
		out = append(out, s)
	}
	return out
}

// routeHostnames are the route's hostnames, lower case, when each is a
// Gateway API hostname (a DNS name, optionally with a leading "*."): a
// route with any other is reported and not served: serving it on every
// host would be broader than it asks.
func routeHostnames(rep *RouteReport, hostnames []string) ([]string, bool) {
	out := make([]string, 0, len(hostnames))
	for i, h := range hostnames {
		h = strings.ToLower(h) // as Envoy compares them
		name := strings.TrimPrefix(h, "*.")
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 || strings.Contains(name, "*") {
			rep.problem("hostnames[%d]: %q is not a hostname (%s); the route is not served", i, h, strings.Join(msgs, "; "))
			return nil, false
		}
		out = append(out, h)
	}
	return out, true
}

// setModelRoute records the route settings of a model the build serves.
func (b *builder) setModelRoute(model string, r spec.ModelRoute) {
	if b.res.Config.ModelRoutes == nil {
		b.res.Config.ModelRoutes = map[string]spec.ModelRoute{}
	}
	b.res.Config.ModelRoutes[model] = r
}
