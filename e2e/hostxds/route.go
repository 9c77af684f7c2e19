package hostxds

import (
	"encoding/json"
	"fmt"
	"slices"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// golangPerRoute is how envoyhost takes a golang ConfigsPerRoute: the one
// plugin's config as the serialized Any Go parses (routecfg.c).
type golangPerRoute struct {
	Plugin string `json:"plugin"`
	Config []byte `json:"config"`
}

// translateRouteConfig turns a RouteConfiguration into envoyhost's form:
// its proto3 JSON, with each golang typed_per_filter_config replaced by
// golang_per_route, and a content hash. filters are the names of the golang
// filters of the chains that use it: Envoy looks a filter's per-route
// config up by the filter's own name (source/common/http/filter_manager.cc:325-330,
// filter_context_.config_name: the HttpFilter name, the ECDS resource's for
// a filter over ECDS).
func translateRouteConfig(rc *routev3.RouteConfiguration, filters []string) (json.RawMessage, error) {
	path := "RouteConfiguration " + rc.GetName()
	if err := checkModelled(rc, path); err != nil {
		return nil, err
	}
	// Per-filter configs are only valid for filters the chain has, and
	// envoyhost's chain has one HTTP filter besides the router.
	perRoute := map[string]*golangPerRoute{}
	for i, vh := range rc.GetVirtualHosts() {
		vpath := fmt.Sprintf("%s.virtual_hosts[%d]", path, i)
		g, err := perFilter(vh.GetTypedPerFilterConfig(), vpath, filters)
		if err != nil {
			return nil, err
		}
		perRoute[vpath] = g
		for j, r := range vh.GetRoutes() {
			rpath := fmt.Sprintf("%s.routes[%d]", vpath, j)
			if r.GetRoute() == nil && r.GetDirectResponse() == nil {
				return nil, fmt.Errorf("%w: %s: only route and direct_response actions", ErrNotModelled, rpath)
			}
			if g, err = perFilter(r.GetTypedPerFilterConfig(), rpath, filters); err != nil {
				return nil, err
			}
			perRoute[rpath] = g
		}
	}
	stripped := proto.Clone(rc).(*routev3.RouteConfiguration)
	// metadata configures nothing the host runs, and the host proxies no
	// upgrades (allow.go says why both are accepted)
	for _, vh := range stripped.GetVirtualHosts() {
		vh.TypedPerFilterConfig, vh.Metadata = nil, nil
		for _, r := range vh.GetRoutes() {
			r.TypedPerFilterConfig, r.Metadata = nil, nil
			if a := r.GetRoute(); a != nil {
				a.UpgradeConfigs = nil
			}
		}
	}
	m, err := protoMap(stripped)
	if err != nil {
		return nil, err
	}
	vhs, _ := m["virtual_hosts"].([]any)
	for i, v := range vhs {
		vm, _ := v.(map[string]any)
		vpath := fmt.Sprintf("%s.virtual_hosts[%d]", path, i)
		if g := perRoute[vpath]; g != nil {
			vm["golang_per_route"] = g
		}
		routes, _ := vm["routes"].([]any)
		for j, r := range routes {
			if g := perRoute[fmt.Sprintf("%s.routes[%d]", vpath, j)]; g != nil {
				r.(map[string]any)["golang_per_route"] = g
			}
		}
	}
	if m["hash"], err = hashOf(rc); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

func perFilter(cfgs map[string]*anypb.Any, path string, filters []string) (*golangPerRoute, error) {
	var out *golangPerRoute
	for name, a := range cfgs {
		fpath := fmt.Sprintf("%s.typed_per_filter_config[%s]", path, name)
		// A key that names no filter of the chain is never looked up by
		// Envoy; the host does not model such dead config and refuses it.
		if !slices.Contains(filters, name) || a.GetTypeUrl() != perRouteGolang {
			return nil, fmt.Errorf("%w: %s: envoyhost's chain has only the golang filter %q (ConfigsPerRoute)", ErrNotModelled, fpath, filters)
		}
		var pr golangv3alpha.ConfigsPerRoute
		if err := a.UnmarshalTo(&pr); err != nil {
			return nil, fmt.Errorf("%s: %w", fpath, err)
		}
		if len(pr.GetPluginsConfig()) != 1 {
			return nil, fmt.Errorf("%w: %s.plugins_config: exactly one plugin", ErrNotModelled, fpath)
		}
		for plugin, rp := range pr.GetPluginsConfig() {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rp.GetConfig())
			if err != nil {
				return nil, err
			}
			out = &golangPerRoute{Plugin: plugin, Config: b}
		}
	}
	return out, nil
}
