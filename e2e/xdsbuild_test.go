package e2e

import (
	"encoding/json"
	"net"
	"strconv"
	"testing"
	"time"

	xdstype "github.com/cncf/xds/go/xds/type/v3"
	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// Hand-built xDS resources for the host's own xDS tests: what Envoy's
// config looks like, built with go-control-plane's types.

const (
	golangFilterName = "envoy.filters.http.golang"
	hcmName          = "envoy.filters.network.http_connection_manager"
	golangTypeURL    = "type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.Config"
	// testLibraryPath is what a config names; envoyhost runs --library.
	testLibraryPath = "/usr/local/lib/test/filter.so"
)

func typed(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// golangConfig is a golang filter config with a TypedStruct plugin_config.
func golangConfig(t *testing.T, plugin, typeURL string, value map[string]any) *golangv3alpha.Config {
	t.Helper()
	// through JSON: structpb takes []any, not the []string a config has
	raw, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	var s structpb.Struct
	if err := protojson.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return &golangv3alpha.Config{LibraryId: "test", LibraryPath: testLibraryPath, PluginName: plugin,
		PluginConfig: typed(t, &xdstype.TypedStruct{TypeUrl: typeURL, Value: &s})}
}

func probeConfig(t *testing.T, name string) *golangv3alpha.Config {
	return golangConfig(t, harness.ConfigProbePlugin, "", map[string]any{"name": name})
}

func golangInline(t *testing.T, cfg *golangv3alpha.Config) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: golangFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: typed(t, cfg)}}
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
}

// golangECDS references the filter config by name over ECDS (CONTRACTS item 1).
func golangECDS(name string) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
		ConfigSource: adsSource(), TypeUrls: []string{golangTypeURL},
	}}}
}

func ecdsResource(t *testing.T, name string, cfg *golangv3alpha.Config) *corev3.TypedExtensionConfig {
	return &corev3.TypedExtensionConfig{Name: name, TypedConfig: typed(t, cfg)}
}

func socketAddr(t *testing.T, hostport string) *corev3.Address {
	t.Helper()
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(p)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: h, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)}}}}
}

// listener is one HTTP listener: the HCM with RDS route rds and filters
// (the router is added last); edit adjusts the HCM.
func listener(t *testing.T, name, rds string, edit func(*hcmv3.HttpConnectionManager), filters ...*hcmv3.HttpFilter) *listenerv3.Listener {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: rds, ConfigSource: adsSource()}},
		HttpFilters: append(filters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: typed(t, &routerv3.Router{})}}),
	}
	if edit != nil {
		edit(hcm)
	}
	return &listenerv3.Listener{
		Name:    name,
		Address: socketAddr(t, "127.0.0.1:10000"),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: hcmName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: typed(t, hcm)}}}}},
	}
}

func routeConfig(name string, routes ...*routev3.Route) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: "all", Domains: []string{"*"}, Routes: routes}}}
}

func prefixRoute(name, prefix, cluster string) *routev3.Route {
	return &routev3.Route{Name: name,
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}}
}

func lbEndpoints(t *testing.T, addrs ...string) []*endpointv3.LocalityLbEndpoints {
	var eps []*endpointv3.LbEndpoint
	for _, a := range addrs {
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: socketAddr(t, a)}}})
	}
	return []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}
}

func staticCluster(t *testing.T, name string, addrs ...string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout: durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: lbEndpoints(t, addrs...)}}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		ConnectTimeout:   durationpb.New(time.Second),
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()}}
}

func assignment(t *testing.T, name string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: lbEndpoints(t, addrs...)}
}

// resources groups hand-built resources by type for ADS.Set.
type resources map[resource.Type][]types.Resource

func (r resources) add(t resource.Type, rs ...types.Resource) resources {
	r[t] = append(r[t], rs...)
	return r
}

// originalDstCluster reads the endpoint where Inflow writes it (CONTRACTS item 2).
func originalDstCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy: clusterv3.Cluster_CLUSTER_PROVIDED, ConnectTimeout: durationpb.New(time.Second),
		LbConfig: &clusterv3.Cluster_OriginalDstLbConfig_{OriginalDstLbConfig: &clusterv3.Cluster_OriginalDstLbConfig{
			UseHttpHeader: true, HttpHeaderName: protocol.HeaderDestination,
			MetadataKey: &metadatav3.MetadataKey{Key: protocol.MetadataNamespaceLB, Path: []*metadatav3.MetadataKey_PathSegment{{
				Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: protocol.MetadataKeyDestination}}}},
		}}}
}

// inflowFilterConfig is Inflow's plugin_config for filterCfg (as inflowConfig builds).
func inflowFilterConfig(t *testing.T, filterCfg map[string]any) *golangv3alpha.Config {
	return golangConfig(t, protocol.PluginName, config.TypeURL, filterCfg)
}
