package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/inflow-gateway/inflow/controlplane/local"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// Stacks for benchmark commands and other tracks' tests: an xDS-driven host
// with what it needs in front of it, as one Close.

// StartInflowHost writes cfg (the control plane's config, as YAML or
// anything encoding/json encodes) to dir/inflow.yaml, serves it from the
// real control plane (controlplane/local, which follows edits of that file)
// and starts a host driven by it, waiting for opts.Listener (default
// "public"). Closing the host stops the control plane too.
func StartInflowHost(ctx context.Context, dir string, cfg any, opts XDSHostOptions) (*Host, error) {
	h, _, err := startInflow(ctx, dir, cfg, nil, opts)
	return h, err
}

// StartInflowKubernetesHost is StartInflowHost with the control plane in
// Kubernetes mode: cfg has a kubernetes section and k reaches the API
// server. It returns the control plane too, whose Kube source reports each
// build. Closing the host stops the control plane.
func StartInflowKubernetesHost(ctx context.Context, dir string, cfg any, k *local.Kubernetes, opts XDSHostOptions) (*Host, *local.Server, error) {
	if k == nil {
		return nil, nil, errors.New("harness: StartInflowKubernetesHost needs the API server (local.Kubernetes)")
	}
	return startInflow(ctx, dir, cfg, k, opts)
}

func startInflow(ctx context.Context, dir string, cfg any, k *local.Kubernetes, opts XDSHostOptions) (*Host, *local.Server, error) {
	text, ok := cfg.([]byte)
	if !ok {
		var err error
		if text, err = json.Marshal(cfg); err != nil { // JSON is YAML
			return nil, nil, err
		}
	}
	path := filepath.Join(dir, "inflow.yaml")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		return nil, nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cp, err := local.StartKubernetes(ctx, path, log, k)
	if err != nil {
		return nil, nil, err
	}
	opts.ControlPlane = cp.Addr
	if opts.Listener == "" {
		opts.Listener = "public"
	}
	h, err := StartXDSHost(ctx, opts)
	if err != nil {
		return nil, nil, errors.Join(err, cp.Close())
	}
	h.onClose = append(h.onClose, func() { _ = cp.Close() })
	return h, cp, nil
}

// PassthroughOptions configure StartPassthroughHost.
type PassthroughOptions struct {
	// Upstreams are the endpoints of a STATIC cluster every request goes
	// to (round robin); empty: an ORIGINAL_DST cluster reading the
	// x-gateway-destination-endpoint header, so the client picks.
	Upstreams   []string
	Concurrency int
}

// StartPassthroughHost starts a host running passthrough.so (the trivial Go
// filter) on listener "public", fed over ADS with hand-built resources: the
// golang filter inline (the form Envoy Gateway uses), a route of every path
// to one cluster. It is the baseline the benchmarks compare Inflow with.
func StartPassthroughHost(ctx context.Context, o PassthroughOptions) (*Host, error) {
	res, err := passthroughResources(o.Upstreams)
	if err != nil {
		return nil, err
	}
	ads, err := StartADS(ctx)
	if err != nil {
		return nil, err
	}
	if err := ads.Set(ctx, "1", res); err != nil {
		ads.Close()
		return nil, err
	}
	h, err := StartXDSHost(ctx, XDSHostOptions{ControlPlane: ads.Addr, Listener: "public",
		Library: Out(PassthroughPlugin + ".so"), Concurrency: o.Concurrency})
	if err != nil {
		ads.Close()
		return nil, err
	}
	h.onClose = append(h.onClose, ads.Close)
	return h, nil
}

func passthroughResources(upstreams []string) (map[resource.Type][]types.Resource, error) {
	const clusterName = "upstream"
	filter, err := anypb.New(&golangv3alpha.Config{LibraryId: PassthroughPlugin,
		LibraryPath: "/usr/local/lib/" + PassthroughPlugin + ".so", PluginName: PassthroughPlugin})
	if err != nil {
		return nil, err
	}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: "public",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "public", VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"},
				Routes: []*routev3.Route{{Name: "all",
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: clusterName}}}}}}}}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: "envoy.filters.http.golang", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: filter}},
			{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
		},
	})
	if err != nil {
		return nil, err
	}
	lis := &listenerv3.Listener{Name: "public", Address: socketAddress("127.0.0.1", 10000),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}}}}}
	cluster, err := passthroughCluster(clusterName, upstreams)
	if err != nil {
		return nil, err
	}
	return map[resource.Type][]types.Resource{
		resource.ListenerType: {lis},
		resource.ClusterType:  {cluster},
	}, nil
}

func passthroughCluster(name string, upstreams []string) (*clusterv3.Cluster, error) {
	c := &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second)}
	if len(upstreams) == 0 {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
		c.LbConfig = &clusterv3.Cluster_OriginalDstLbConfig_{OriginalDstLbConfig: &clusterv3.Cluster_OriginalDstLbConfig{
			UseHttpHeader: true, HttpHeaderName: protocol.HeaderDestination}}
		return c, nil
	}
	var eps []*endpointv3.LbEndpoint
	for _, u := range upstreams {
		addr, err := parseSocketAddress(u)
		if err != nil {
			return nil, err
		}
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: addr}}})
	}
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	c.LoadAssignment = &endpointv3.ClusterLoadAssignment{ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
	return c, nil
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func parseSocketAddress(hostport string) (*corev3.Address, error) {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", hostport, err)
	}
	return socketAddress(ap.Addr().String(), uint32(ap.Port())), nil
}
