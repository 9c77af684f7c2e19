package translator

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// makeRouteConfig gives each listener its own routes so hostnames can
// differ per listener; the model routes are the same everywhere, except
// that a model with hostnames is only in the virtual hosts of those.
func makeRouteConfig(l spec.Listener, c *spec.Config) (*routev3.RouteConfiguration, error) {
	domains := []string{"*"}
	if len(l.Hostnames) > 0 {
		domains = make([]string, len(l.Hostnames))
		for i, h := range l.Hostnames {
			domains[i] = strings.ToLower(h)
		}
	}
	backends := make(map[string]spec.Backend, len(c.Backends))
	for _, b := range c.Backends {
		backends[b.Name] = b
	}
	pools := make(map[string]config.Pool, len(c.Pools))
	for _, p := range c.Pools {
		pools[p.Name] = p
	}
	// No catch-all: a request no model route takes gets Envoy's "no route"
	// 404, which local_reply_config turns into an OpenAI error.
	models := make([]hostedRoutes, 0, len(c.Models))
	for _, m := range c.Models {
		mr := c.RouteOf(m.Name)
		hosts := servedHosts(domains, mr.Hostnames)
		if len(hosts) == 0 {
			continue // none of its hostnames is this listener's
		}
		routes, err := modelRoutes(m, mr, pools, backends)
		if err != nil {
			return nil, err
		}
		models = append(models, hostedRoutes{routes: routes, hosts: hosts})
	}
	return &routev3.RouteConfiguration{
		Name:         RouteConfigName(l.Name),
		VirtualHosts: virtualHosts(l.Name, domains, models),
	}, nil
}

// modelRoutes are a model's routes on the x-ai-eg-model header the filter
// sets. A model split across backends (backend_refs) gets one route per
// backend, matching also the x-inflow-backend header naming it, then the
// plain route to its default backend, which is what a filter that does not
// split (schema 4 and older) reaches.
func modelRoutes(m config.Model, mr spec.ModelRoute, pools map[string]config.Pool, backends map[string]spec.Backend) ([]*routev3.Route, error) {
	var out []*routev3.Route
	var seen []string
	for _, ref := range m.BackendRefs {
		if ref.EffectiveWeight() == 0 || slices.Contains(seen, ref.Backend) {
			continue
		}
		seen = append(seen, ref.Backend)
		r, err := modelRoute(m, ref.Backend, mr, pools, backends)
		if err != nil {
			return nil, err
		}
		r.Name += "/backend/" + ref.Backend
		r.Match.Headers = append(r.Match.Headers, exactHeader(protocol.HeaderBackend, ref.Backend))
		out = append(out, r)
	}
	r, err := modelRoute(m, m.Backend, mr, pools, backends)
	if err != nil {
		return nil, err
	}
	return append(out, r), nil
}

// modelRoute routes model m to its pool, or to backend.
func modelRoute(m config.Model, backend string, mr spec.ModelRoute, pools map[string]config.Pool, backends map[string]spec.Backend) (*routev3.Route, error) {
	timeout := routeTimeout
	if t := mr.EffectiveTimeout(); t > 0 {
		timeout = t
	}
	action := &routev3.RouteAction{
		Timeout:     durationpb.New(timeout),
		IdleTimeout: durationpb.New(streamIdleTimeout),
	}
	r := &routev3.Route{
		Name: "model/" + m.Name,
		Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
			Headers:       []*routev3.HeaderMatcher{exactHeader(protocol.HeaderModel, m.Name)},
		},
		Action: &routev3.Route_Route{Route: action},
	}
	if m.Pool != "" {
		p, ok := pools[m.Pool]
		if !ok {
			return nil, fmt.Errorf("%w: model %q: pool %q is not defined", ErrTranslate, m.Name, m.Pool)
		}
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: PoolClusterName(m.Pool)}
		action.RetryPolicy = PoolRetryPolicy(p)
		return r, nil
	}
	b, ok := backends[backend]
	if !ok {
		return nil, fmt.Errorf("%w: model %q: backend %q is not defined", ErrTranslate, m.Name, backend)
	}
	u, err := spec.ParseBaseURL(b.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: backend %q: %w", ErrTranslate, b.Name, err)
	}
	action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: BackendClusterName(b.Name)}
	action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: u.Authority()}
	if u.PathPrefix != "" {
		// OpenAI clients call /v1/...; the backend serves the same API
		// below its own base path.
		r.Match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/v1/"}
		action.PrefixRewrite = u.PathPrefix
	}
	return r, nil
}

func exactHeader(name, value string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{
		Name: name,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value},
		}},
	}
}

// PoolRetryPolicy walks the fallback list of an override_host pool: each
// retry is a new pick, and OverrideHost gives it the next endpoint the
// filter listed. Retries cover what a dead or restarting pod produces:
// refused or failed connections, resets before the response started, and
// 503. One retry per fallback; none for ORIGINAL_DST, which would only
// retry the same address.
func PoolRetryPolicy(p config.Pool) *routev3.RetryPolicy {
	n := p.Scheduler.Resolve().Fallbacks
	if p.Destination.Effective() != config.DestinationOverrideHost || n == 0 {
		return nil
	}
	return &routev3.RetryPolicy{
		RetryOn:              retryOn,
		NumRetries:           wrapperspb.UInt32(uint32(n)),
		RetriableStatusCodes: []uint32{http.StatusServiceUnavailable},
	}
}
