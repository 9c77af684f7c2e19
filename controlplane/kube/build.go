// Package kube is the Kubernetes source of the control plane: it watches
// InferencePools, their Pods, InferenceObjectives and the Envoy AI
// Gateway's AIGatewayRoutes, AIServiceBackends and BackendSecurityPolicies,
// and produces the same spec.Config the file source produces, for the same
// translator. What it cannot serve it reports on the objects' status.
//
// Build is pure (objects in, spec and reports out); Source runs the
// informers, coalesces their events and publishes; the leader alone writes
// status (status.go, leader.go); SyncCredentials is the sidecar that turns
// API-key Secrets into the files Envoy reads.
package kube

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	giev1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	giev1alpha2 "sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/filter/config"
)

// Inputs is one read of everything the source watches.
type Inputs struct {
	Pools      []*giev1.InferencePool
	Pods       []*corev1.Pod
	Objectives []*giev1alpha2.InferenceObjective
	// Routes, Backends and Policies are AIGatewayRoutes, AIServiceBackends
	// and BackendSecurityPolicies; EGBackends are Envoy Gateway Backends.
	Routes, Backends, Policies, EGBackends []*unstructured.Unstructured
}

// Result is the spec built from Inputs and what became of each object.
type Result struct {
	Config *spec.Config
	Routes map[types.NamespacedName]*RouteReport
	Pools  map[types.NamespacedName]*PoolReport
}

// PoolReport is what became of one InferencePool that a route uses.
type PoolReport struct {
	Generation int64
	// Parents are the Gateways of the routes that use the pool.
	Parents []types.NamespacedName
	// Problem, when set, is why the pool is not served.
	Problem, Reason string
}

// Build merges what Kubernetes holds into base (the file's config, with
// its kubernetes section). Routes are taken oldest first, so when two
// claim a model name the older keeps it, as Gateway API resolves
// conflicts; the file's own models, pools and backends come before all.
func Build(base *spec.Config, in *Inputs) *Result {
	k := base.Kubernetes
	c := *base
	c.Models = slices.Clone(base.Models)
	c.Pools = slices.Clone(base.Pools)
	c.Backends = slices.Clone(base.Backends)
	c.ModelRoutes = maps.Clone(base.ModelRoutes)
	res := &Result{Config: &c, Routes: map[types.NamespacedName]*RouteReport{}, Pools: map[types.NamespacedName]*PoolReport{}}

	b := &builder{
		k: k, envoyGateway: base.EnvoyGateway != nil, res: res, backends: newBackendResolver(in, k.EffectiveCredentialsDir()),
		pools: map[types.NamespacedName]*giev1.InferencePool{}, usedPools: map[types.NamespacedName]bool{},
		usedBackends: map[types.NamespacedName]bool{}, models: map[string]string{}, names: map[string]bool{},
		parents: map[types.NamespacedName][]types.NamespacedName{}, rejected: map[types.NamespacedName]error{},
	}
	for _, p := range in.Pools {
		b.pools[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
	}
	for _, m := range base.Models {
		b.models[m.Name] = "the config file"
	}
	for _, p := range base.Pools {
		b.names["pool/"+p.Name] = true
	}
	for _, be := range base.Backends {
		b.names["backend/"+be.Name] = true
	}
	routes := slices.Clone(in.Routes)
	slices.SortFunc(routes, func(x, y *unstructured.Unstructured) int {
		return cmp.Or(x.GetCreationTimestamp().Compare(y.GetCreationTimestamp().Time),
			strings.Compare(x.GetNamespace(), y.GetNamespace()), strings.Compare(x.GetName(), y.GetName()))
	})
	for _, u := range routes {
		b.route(u)
	}
	b.addPools(in)
	return res
}

type builder struct {
	k *spec.Kubernetes
	// envoyGateway: the Envoy Gateway mode (spec.EnvoyGateway), where
	// AIGatewayRoutes become HTTPRoutes Envoy Gateway matches (hostnames,
	// extra headers included) and every InferencePool is a pool.
	envoyGateway bool
	res          *Result
	backends     *backendResolver
	pools        map[types.NamespacedName]*giev1.InferencePool
	// usedPools and usedBackends are those some served rule uses.
	usedPools, usedBackends map[types.NamespacedName]bool
	// models maps a served model name to who serves it, for conflicts.
	models map[string]string
	// names holds "pool/<name>" and "backend/<name>" taken in the spec.
	names map[string]bool
	// parents are the Gateways of the routes naming each InferencePool;
	// rejected holds the pools named but not servable, with why.
	parents  map[types.NamespacedName][]types.NamespacedName
	rejected map[types.NamespacedName]error
}

func (b *builder) ours(parents []types.NamespacedName) bool {
	if len(b.k.Gateways) == 0 {
		return true
	}
	return slices.ContainsFunc(parents, func(p types.NamespacedName) bool { return slices.Contains(b.k.Gateways, p.String()) })
}

func (b *builder) route(u *unstructured.Unstructured) {
	id := types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}
	rep := &RouteReport{Generation: u.GetGeneration()}
	var r aiGatewayRoute
	if err := decodeSpec(u, &r); err != nil {
		rep.problem("%v", err)
		b.res.Routes[id] = rep
		return
	}
	rep.Parents = routeParents(u, r.ParentRefs)
	if !b.ours(rep.Parents) {
		return // a route of another Gateway: not ours to serve or report on
	}
	b.res.Routes[id] = rep
	hostnames, ok := routeHostnames(rep, r.Hostnames)
	if !ok {
		return
	}
	costs := routeCosts(rep, r.Costs)
	for i, rule := range r.Rules {
		where := fmt.Sprintf("rules[%d]", i)
		models := ruleModels(rep, where, rule, b.envoyGateway)
		if len(models) == 0 {
			continue
		}
		d, ok := destination(rep, where, u.GetNamespace(), rule)
		if ok && b.envoyGateway && d.pool.Name == "" {
			rep.problem("%s: AIServiceBackends are not served in Envoy Gateway mode (no provider translation or key injection there)", where)
			continue
		}
		if !ok || !b.resolve(rep, rep.Parents, &d) {
			continue
		}
		timeout := ruleTimeout(rep, where, rule.Timeouts)
		served := false
		for _, name := range models {
			if owner, taken := b.models[name]; taken {
				rep.problem("%s: model %q is already served by %s", where, name, owner)
				continue
			}
			b.models[name] = "AIGatewayRoute " + id.String()
			m := d.model(name)
			m.OwnedBy = deref(rule.OwnedBy, "")
			m.Costs = costs
			b.res.Config.Models = append(b.res.Config.Models, m)
			b.setModelRoute(name, spec.ModelRoute{Hostnames: hostnames, Timeout: timeout})
			served = true
		}
		if served {
			rep.Served++
		}
	}
	if len(r.Rules) == 0 {
		rep.problem("no rules")
	}
}

// usePool checks an InferencePool can be served and marks it used.
func (b *builder) usePool(n types.NamespacedName) error {
	p, ok := b.pools[n]
	if !ok {
		return refErrorf(reasonBackendNotFound, "InferencePool %s not found", n)
	}
	if err := servable(p); err != nil {
		b.rejected[n] = err
		return refErrorf(reasonUnsupported, "InferencePool %s: %v", n, err)
	}
	if b.names["pool/"+PoolName(n)] && !b.usedPools[n] {
		return refErrorf(reasonUnsupported, "InferencePool %s: the config file already defines pool %q", n, PoolName(n))
	}
	b.usedPools[n] = true
	return nil
}

// servable is whether Inflow can send the pool's traffic as it asks.
func servable(p *giev1.InferencePool) error {
	if len(p.Spec.TargetPorts) == 0 {
		return fmt.Errorf("no targetPorts")
	}
	if p.Spec.AppProtocol != "" && p.Spec.AppProtocol != giev1.AppProtocolHTTP {
		return fmt.Errorf("appProtocol %q is not supported (HTTP/1.1 only)", p.Spec.AppProtocol)
	}
	return nil
}

// useBackend resolves an AIServiceBackend into the spec once.
func (b *builder) useBackend(n types.NamespacedName) error {
	if b.usedBackends[n] {
		return nil
	}
	be, err := b.backends.resolve(n)
	if err != nil {
		return err
	}
	if b.names["backend/"+be.Name] {
		return refErrorf(reasonUnsupported, "AIServiceBackend %s: the config file already defines backend %q", n, be.Name)
	}
	b.usedBackends[n] = true
	b.res.Config.Backends = append(b.res.Config.Backends, be)
	return nil
}

// addPools adds every used pool with its endpoints and objectives, in name
// order, and reports every InferencePool some route names.
func (b *builder) addPools(in *Inputs) {
	pods := map[string][]*corev1.Pod{}
	for _, p := range in.Pods {
		pods[p.Namespace] = append(pods[p.Namespace], p)
	}
	objectives := map[types.NamespacedName]map[string]int{}
	for _, o := range in.Objectives {
		n := types.NamespacedName{Namespace: o.Namespace, Name: string(o.Spec.PoolRef.Name)}
		if objectives[n] == nil {
			objectives[n] = map[string]int{}
		}
		// Unset priority is 0, as the EPP treats it.
		objectives[n][o.Name] = deref(o.Spec.Priority, 0)
	}
	if b.envoyGateway {
		// Envoy Gateway's routes (HTTPRoutes of their own or from
		// AIGatewayRoutes) decide which pools get traffic: every servable
		// InferencePool is served.
		for n, p := range b.pools {
			if err := servable(p); err != nil {
				b.rejected[n] = err
			} else if !b.names["pool/"+PoolName(n)] {
				b.usedPools[n] = true
			}
		}
	}
	used := make([]types.NamespacedName, 0, len(b.usedPools))
	for n := range b.usedPools {
		used = append(used, n)
	}
	slices.SortFunc(used, func(x, y types.NamespacedName) int { return strings.Compare(x.String(), y.String()) })
	for _, n := range used {
		p := b.pools[n]
		eps := Endpoints(p, pods[n.Namespace])
		b.res.Config.Pools = append(b.res.Config.Pools, config.Pool{
			Name: PoolName(n), Endpoints: eps, Scheduler: b.k.Scheduler, Objectives: objectives[n],
		})
		b.res.Pools[n] = b.poolReport(n, p)
	}
	for n, err := range b.rejected {
		rep := b.poolReport(n, b.pools[n])
		rep.Problem, rep.Reason = err.Error(), reasonUnsupported
		b.res.Pools[n] = rep
	}
}

func (b *builder) poolReport(n types.NamespacedName, p *giev1.InferencePool) *PoolReport {
	rep := &PoolReport{Generation: p.Generation, Parents: slices.Clone(b.parents[n])}
	slices.SortFunc(rep.Parents, func(x, y types.NamespacedName) int { return strings.Compare(x.String(), y.String()) })
	return rep
}
