package translator

import (
	"fmt"
	"net/http"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// makeRouteConfig gives each listener its own routes so hostnames can
// differ per listener; the model routes are the same everywhere.
func makeRouteConfig(l spec.Listener, c *spec.Config) (*routev3.RouteConfiguration, error) {
	domains := l.Hostnames
	if len(domains) == 0 {
		domains = []string{"*"}
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
	routes := make([]*routev3.Route, 0, len(c.Models))
	for _, m := range c.Models {
		r, err := modelRoute(m, pools, backends)
		if err != nil {
			return nil, err
		}
		routes = append(routes, r)
	}
	return &routev3.RouteConfiguration{
		Name: RouteConfigName(l.Name),
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    l.Name,
			Domains: domains,
			Routes:  routes,
		}},
	}, nil
}

func modelRoute(m config.Model, pools map[string]config.Pool, backends map[string]spec.Backend) (*routev3.Route, error) {
	action := &routev3.RouteAction{
		Timeout:     durationpb.New(routeTimeout),
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
		action.RetryPolicy = poolRetryPolicy(p)
		return r, nil
	}
	b, ok := backends[m.Backend]
	if !ok {
		return nil, fmt.Errorf("%w: model %q: backend %q is not defined", ErrTranslate, m.Name, m.Backend)
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

// poolRetryPolicy walks the fallback list of an override_host pool: each
// retry is a new pick, and OverrideHost gives it the next endpoint the
// filter listed. Retries cover what a dead or restarting pod produces:
// refused or failed connections, resets before the response started, and
// 503. One retry per fallback; none for ORIGINAL_DST, which would only
// retry the same address.
func poolRetryPolicy(p config.Pool) *routev3.RetryPolicy {
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
