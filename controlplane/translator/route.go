package translator

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// notFoundBody is the catch-all answer, shaped like an OpenAI error so SDKs
// surface the message. Known models never get here: the filter sets
// x-ai-eg-model (or answers unknown models itself) before routing.
const notFoundBody = `{"error":{"message":"no route for this request: use an OpenAI-style /v1/ path and a configured model","type":"invalid_request_error","param":null,"code":"not_found"}}`

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
	routes := make([]*routev3.Route, 0, len(c.Models)+1)
	for _, m := range c.Models {
		r, err := modelRoute(m, backends)
		if err != nil {
			return nil, err
		}
		routes = append(routes, r)
	}
	routes = append(routes, notFoundRoute())
	return &routev3.RouteConfiguration{
		Name: RouteConfigName(l.Name),
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    l.Name,
			Domains: domains,
			Routes:  routes,
		}},
	}, nil
}

func modelRoute(m config.Model, backends map[string]spec.Backend) (*routev3.Route, error) {
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
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: PoolClusterName(m.Pool)}
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
	if key := b.APIKeyValue; key != "" {
		// The key lives only here, in RDS; it replaces whatever the
		// client sent so the gateway's clients never need the upstream key.
		r.RequestHeadersToAdd = []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "authorization", Value: "Bearer " + key.Reveal()},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}}
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

func notFoundRoute() *routev3.Route {
	return &routev3.Route{
		Name:  "not-found",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
			Status: 404,
			Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: notFoundBody}},
		}},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: "content-type", Value: "application/json"},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}},
	}
}
