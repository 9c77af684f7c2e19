package kube

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/inflow-gateway/inflow/filter/config"
)

// RouteReport is what became of one AIGatewayRoute: the leader writes it
// as the route's status conditions.
type RouteReport struct {
	Generation int64
	// Served counts rules that became models.
	Served int
	// Problems are parts of the route that are not served, each naming
	// where it is ("rules[1]: ...").
	Problems []string
	// Unresolved are backend references that could not be followed, with
	// the reason of the first (ResolvedRefs False).
	Unresolved       []string
	UnresolvedReason string
	// Parents are the Gateways the route attaches to.
	Parents []types.NamespacedName
}

func (r *RouteReport) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

func (r *RouteReport) unresolved(where string, err error) {
	reason := reasonUnsupported
	if re, ok := err.(*refError); ok {
		reason = re.reason
	}
	if r.UnresolvedReason == "" {
		r.UnresolvedReason = reason
	}
	r.Unresolved = append(r.Unresolved, where+": "+err.Error())
}

// routeParents are the Gateways a route names (Gateway API defaults: group
// gateway.networking.k8s.io, kind Gateway, the route's namespace).
func routeParents(u *unstructured.Unstructured, refs []parentRef) []types.NamespacedName {
	var out []types.NamespacedName
	for _, p := range refs {
		if deref(p.Group, gatewayAPIGroup) != gatewayAPIGroup || deref(p.Kind, kindGateway) != kindGateway {
			continue
		}
		out = append(out, types.NamespacedName{Namespace: deref(p.Namespace, u.GetNamespace()), Name: p.Name})
	}
	return out
}

// ruleModels are the model names a rule matches: each match must be
// exactly one Exact header match on x-ai-eg-model, which the filter sets
// from the body. Anything else cannot be expressed as a model and is
// reported. In Envoy Gateway mode the rule becomes an HTTPRoute rule that
// Envoy Gateway matches, so other headers beside the model's are its
// business, and a match without a model header is served through the
// route's binding to its pool.
func ruleModels(rep *RouteReport, where string, rule routeRule, envoyGateway bool) []string {
	if len(rule.Matches) == 0 {
		if !envoyGateway {
			rep.problem("%s: a rule without matches (a catch-all) is not supported: match %s", where, modelHeaderMatch)
		}
		return nil
	}
	var models []string
	for j, m := range rule.Matches {
		at := fmt.Sprintf("%s.matches[%d]", where, j)
		headers := m.Headers
		if envoyGateway {
			headers = slices.DeleteFunc(slices.Clone(headers), func(h headerMatch) bool { return !strings.EqualFold(h.Name, modelHeaderMatch) })
			if len(headers) == 0 {
				continue
			}
		}
		if len(headers) != 1 {
			rep.problem("%s: only a single %s header match is supported, got %d header matches", at, modelHeaderMatch, len(headers))
			continue
		}
		h := headers[0]
		switch {
		case !strings.EqualFold(h.Name, modelHeaderMatch):
			rep.problem("%s: header %q: only %s can be matched", at, h.Name, modelHeaderMatch)
		case deref(h.Type, "Exact") != "Exact":
			rep.problem("%s: match type %q is not supported (Exact only)", at, *h.Type)
		case h.Value == "":
			rep.problem("%s: empty model name", at)
		default:
			models = append(models, h.Value)
		}
	}
	return models
}

// ruleDestination is where a rule's models go: one InferencePool, or
// AIServiceBackend refs with their weights, priorities and
// modelNameOverrides.
type ruleDestination struct {
	pool types.NamespacedName // set for an InferencePool
	// poolAt is where the pool ref is; poolOverride its modelNameOverride.
	poolAt, poolOverride string
	services             []serviceRef
}

// serviceRef is one AIServiceBackend ref of a rule that takes traffic.
type serviceRef struct {
	at       string // where in the route, for reports
	backend  types.NamespacedName
	model    string // modelNameOverride; "" keeps the client's name
	weight   uint32
	priority uint32
}

func isPoolRef(r backendRef) bool {
	return deref(r.Group, "") == inferenceGroup && deref(r.Kind, "") == kindInferencePool
}

func isServiceRef(r backendRef) bool {
	g, k := deref(r.Group, ""), deref(r.Kind, "")
	return (g == "" && k == "") || (g == aiGatewayGroup && k == kindAIServiceBackend)
}

// destination classifies a rule's backendRefs the way the AI Gateway's
// CRD validation does: one InferencePool, or AIServiceBackends, never
// mixed. Refs of weight 0 take no traffic, as in Gateway API.
func destination(rep *RouteReport, where, ns string, rule routeRule) (ruleDestination, bool) {
	var pools []backendRef
	var poolAt string
	var d ruleDestination
	services := 0
	for j, r := range rule.BackendRefs {
		at := fmt.Sprintf("%s.backendRefs[%d]", where, j)
		switch {
		case isPoolRef(r):
			pools, poolAt = append(pools, r), at
		case isServiceRef(r):
			services++
			if w := deref(r.Weight, 1); w > 0 {
				d.services = append(d.services, serviceRef{at: at, backend: refName(r, ns), model: r.ModelNameOverride,
					weight: uint32(w), priority: deref(r.Priority, 0)})
			}
		default:
			rep.unresolved(at, refErrorf(reasonInvalidKind, "%s/%s is not an InferencePool or AIServiceBackend", deref(r.Group, ""), deref(r.Kind, "")))
		}
	}
	switch {
	case len(pools) > 0 && services > 0:
		rep.problem("%s: InferencePool and AIServiceBackend references cannot be mixed in one rule", where)
		return ruleDestination{}, false
	case len(pools) > 1:
		rep.problem("%s: only one InferencePool per rule is supported, got %d", where, len(pools))
		return ruleDestination{}, false
	case len(pools) == 1:
		return ruleDestination{pool: refName(pools[0], ns), poolAt: poolAt, poolOverride: pools[0].ModelNameOverride}, true
	case len(rule.BackendRefs) == 0:
		rep.problem("%s: no backendRefs", where)
		return ruleDestination{}, false
	case len(d.services) == 0:
		rep.problem("%s: no backendRef with weight > 0", where)
		return ruleDestination{}, false
	}
	return d, true
}

func refName(r backendRef, ns string) types.NamespacedName {
	return types.NamespacedName{Namespace: deref(r.Namespace, ns), Name: r.Name}
}

// model is where d sends model name: its pool, its one backend, or a split
// across its backends. A split (several backends, or priorities) is
// backend_refs, plus the backend and rewrite a filter that does not split
// uses: the first backend of the lowest priority and that backend's refs
// there.
func (d ruleDestination) model(name string) config.Model {
	if d.pool.Name != "" {
		m := config.Model{Name: name, Pool: PoolName(d.pool)}
		if d.poolOverride != "" {
			m.Rewrite = rewrite(name, []serviceRef{{model: d.poolOverride, weight: 1}})
		}
		return m
	}
	first := d.services[0]
	for _, r := range d.services {
		if r.priority < first.priority {
			first = r
		}
	}
	var own []serviceRef
	split := false
	for _, r := range d.services {
		if r.backend == first.backend && r.priority == first.priority {
			own = append(own, r)
		} else {
			split = true
		}
	}
	m := config.Model{Name: name, Backend: BackendName(first.backend), Rewrite: rewrite(name, own)}
	if split {
		for _, r := range d.services {
			w := r.weight
			m.BackendRefs = append(m.BackendRefs, config.BackendRef{Backend: BackendName(r.backend), Model: r.model, Weight: &w, Priority: r.priority})
		}
	}
	return m
}

// rewrite is the filter's weighted rewrite of model to refs' served names:
// none when every ref keeps the client's name.
func rewrite(model string, refs []serviceRef) []config.Target {
	var out []config.Target
	renamed := false
	for _, r := range refs {
		served := cmp.Or(r.model, model)
		renamed = renamed || served != model
		w := r.weight
		out = append(out, config.Target{Model: served, Weight: &w})
	}
	if !renamed {
		return nil
	}
	return out
}
