package translator

import (
	"fmt"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// The pieces the Envoy Gateway extension server (controlplane/envoygateway)
// puts into the resources Envoy Gateway translated: the same filter, pool
// destinations, retries and local replies this translator gives Inflow's
// own Envoys, so the two modes cannot drift apart.

// ClusterConfigSource subscribes through cluster, a static cluster of the
// proxy's bootstrap reaching this control plane, over delta xDS. Delta,
// because a state-of-the-world subscription through go-control-plane's
// ADS-mode cache is not answered while any name it asks for is missing
// (pkg/cache/v3/simple.go createResponse): one InferencePool Inflow does
// not know yet would withhold every pool's members. A delta subscription
// gets what exists.
func ClusterConfigSource(cluster string) *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
			ApiType:             corev3.ApiConfigSource_DELTA_GRPC,
			TransportApiVersion: corev3.ApiVersion_V3,
			GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster},
			}}},
			SetNodeOnFirstMessageOnly: true,
		}},
	}
}

// RouteBinding is the typed_per_filter_config value (for the filter named
// FilterExtensionName) that binds a route to pool: the golang filter's
// ConfigsPerRoute holding the plugin's config.RouteConfig.
func RouteBinding(pool string) (*anypb.Any, error) {
	rc, err := config.RouteToAny(&config.RouteConfig{Pool: pool})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTranslate, err)
	}
	return typed("route binding", &golangv3alpha.ConfigsPerRoute{PluginsConfig: map[string]*golangv3alpha.RouterPlugin{
		protocol.PluginName: {Override: &golangv3alpha.RouterPlugin_Config{Config: rc}},
	}})
}

// Pack validates m and packs it with deterministic bytes, as every
// resource of this package is (a byte-different listener is drained).
func Pack(what string, m interface {
	proto.Message
	validator
}) (*anypb.Any, error) {
	return typed(what, m)
}
