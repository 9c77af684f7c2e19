package hostxds

import (
	"errors"
	"testing"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Envoy looks a filter's per-route config up by the filter's name
// (filter_manager.cc:325-330): a golang filter over ECDS is named after
// its resource, so its per-route config is keyed by that name; a key that
// names no filter of the chain is refused.
func TestPerRouteConfigIsKeyedByTheFiltersName(t *testing.T) {
	cfg, err := anypb.New(&structpb.Struct{})
	if err != nil {
		t.Fatal(err)
	}
	per, err := anypb.New(&golangv3alpha.ConfigsPerRoute{PluginsConfig: map[string]*golangv3alpha.RouterPlugin{
		"p": {Override: &golangv3alpha.RouterPlugin_Config{Config: cfg}}}})
	if err != nil {
		t.Fatal(err)
	}
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"},
		Routes: []*routev3.Route{{Name: "x", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action:               &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200}},
			TypedPerFilterConfig: map[string]*anypb.Any{"inflow": per}}}}}}
	if _, err := translateRouteConfig(rc, []string{"inflow"}); err != nil {
		t.Errorf("keyed by the ECDS filter's name: %v", err)
	}
	if _, err := translateRouteConfig(rc, []string{golangName}); !errors.Is(err, ErrNotModelled) {
		t.Errorf("keyed by a name the chain does not have: %v, want a refusal", err)
	}
}
