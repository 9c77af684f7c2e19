package kube

import (
	"fmt"
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
// reported.
func ruleModels(rep *RouteReport, where string, rule routeRule) []string {
	if len(rule.Matches) == 0 {
		rep.problem("%s: a rule without matches (a catch-all) is not supported: match %s", where, modelHeaderMatch)
		return nil
	}
	var models []string
	for j, m := range rule.Matches {
		at := fmt.Sprintf("%s.matches[%d]", where, j)
		if len(m.Headers) != 1 {
			rep.problem("%s: only a single %s header match is supported, got %d header matches", at, modelHeaderMatch, len(m.Headers))
			continue
		}
		h := m.Headers[0]
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

// ruleDestination is where a rule's models go: a pool or a backend, with
// the rewrite targets its refs' modelNameOverrides and weights give.
type ruleDestination struct {
	pool    types.NamespacedName // set for an InferencePool
	backend types.NamespacedName // set for an AIServiceBackend
	// overrides are (served name, weight); an empty name keeps the
	// client's model name.
	overrides []override
}

type override struct {
	model  string
	weight uint32
}

func isPoolRef(r backendRef) bool {
	return deref(r.Group, "") == inferenceGroup && deref(r.Kind, "") == kindInferencePool
}

func isServiceRef(r backendRef) bool {
	g, k := deref(r.Group, ""), deref(r.Kind, "")
	return (g == "" && k == "") || (g == aiGatewayGroup && k == kindAIServiceBackend)
}

// destination classifies a rule's backendRefs the way the AI Gateway's
// CRD validation does (one InferencePool, or AIServiceBackends, never
// mixed) and reports what Inflow does not do: weighted splits across
// different AIServiceBackends and priority fallbacks.
func destination(rep *RouteReport, where, ns string, rule routeRule) (ruleDestination, bool) {
	var pools, services []backendRef
	for j, r := range rule.BackendRefs {
		switch {
		case isPoolRef(r):
			pools = append(pools, r)
		case isServiceRef(r):
			services = append(services, r)
		default:
			rep.unresolved(fmt.Sprintf("%s.backendRefs[%d]", where, j),
				refErrorf(reasonInvalidKind, "%s/%s is not an InferencePool or AIServiceBackend", deref(r.Group, ""), deref(r.Kind, "")))
		}
	}
	name := func(r backendRef) types.NamespacedName {
		return types.NamespacedName{Namespace: deref(r.Namespace, ns), Name: r.Name}
	}
	switch {
	case len(pools) > 0 && len(services) > 0:
		rep.problem("%s: InferencePool and AIServiceBackend references cannot be mixed in one rule", where)
		return ruleDestination{}, false
	case len(pools) > 1:
		rep.problem("%s: only one InferencePool per rule is supported, got %d", where, len(pools))
		return ruleDestination{}, false
	case len(pools) == 1:
		d := ruleDestination{pool: name(pools[0])}
		if o := pools[0].ModelNameOverride; o != "" {
			d.overrides = []override{{model: o, weight: 1}}
		}
		return d, true
	case len(services) == 0:
		if len(rule.BackendRefs) == 0 {
			rep.problem("%s: no backendRefs", where)
		}
		return ruleDestination{}, false
	}
	var d ruleDestination
	for j, r := range services {
		at := fmt.Sprintf("%s.backendRefs[%d]", where, j)
		weight := deref(r.Weight, 1)
		switch {
		case deref(r.Priority, 0) > 0:
			rep.problem("%s: priority %d fallback backends are not supported; %s is not used", at, *r.Priority, name(r))
			continue
		case weight <= 0:
			continue // weight 0 takes no traffic, as in Gateway API
		case d.backend.Name == "":
			d.backend = name(r)
		case name(r) != d.backend:
			rep.problem("%s: splitting a model across AIServiceBackends is not supported; %s is not used, %s takes all of it",
				at, name(r), d.backend)
			continue
		}
		d.overrides = append(d.overrides, override{model: r.ModelNameOverride, weight: uint32(weight)})
	}
	if d.backend.Name == "" {
		rep.problem("%s: no backendRef with weight > 0 and priority 0", where)
		return ruleDestination{}, false
	}
	return d, true
}

// rewrite is the filter's rewrite for model under d's overrides: none when
// every target keeps the client's name.
func (d ruleDestination) rewrite(model string) []config.Target {
	var out []config.Target
	renamed := false
	for _, o := range d.overrides {
		served := o.model
		if served == "" {
			served = model
		}
		renamed = renamed || served != model
		w := o.weight
		out = append(out, config.Target{Model: served, Weight: &w})
	}
	if !renamed {
		return nil
	}
	return out
}
