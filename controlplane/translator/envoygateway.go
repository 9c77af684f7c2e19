package translator

import (
	"fmt"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

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

// AssignmentHoldPrefix starts the names of the clusters AssignmentHold makes.
const AssignmentHoldPrefix = "inflow-hold/"

// MarkEGAssignment records in c's metadata the load assignment Envoy
// Gateway made for it (its EDS service name, else its name), before c
// becomes a pool destination that no longer asks for it.
func MarkEGAssignment(c *clusterv3.Cluster) {
	name := c.GetEdsClusterConfig().GetServiceName()
	if name == "" {
		name = c.GetName()
	}
	if c.Metadata == nil {
		c.Metadata = &corev3.Metadata{}
	}
	if c.Metadata.FilterMetadata == nil {
		c.Metadata.FilterMetadata = map[string]*structpb.Struct{}
	}
	md := c.Metadata.FilterMetadata[protocol.MetadataNamespaceInflow]
	if md == nil {
		md = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		c.Metadata.FilterMetadata[protocol.MetadataNamespaceInflow] = md
	}
	md.Fields[protocol.ClusterMetadataKeyEGAssignment] = structpb.NewStringValue(name)
}

// EGAssignment is the load assignment MarkEGAssignment recorded in c ("" if none).
func EGAssignment(c *clusterv3.Cluster) string {
	return c.GetMetadata().GetFilterMetadata()[protocol.MetadataNamespaceInflow].GetFields()[protocol.ClusterMetadataKeyEGAssignment].GetStringValue()
}

// AssignmentHold is a cluster no route uses, whose only job is to keep
// Envoy Gateway's load assignment of a pool cluster subscribed over ADS.
// Envoy Gateway still serves that assignment (empty, for a custom backend),
// and its go-control-plane cache in ADS mode answers an EDS request only
// when it names every assignment of the snapshot ("ADS mode: not
// responding to request ... missing resources in request",
// pkg/cache/v3/simple.go createResponse): without the hold, no EDS
// cluster of the Gateway (Services, Backends) would get its endpoints.
func AssignmentHold(assignment string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 AssignmentHoldPrefix + assignment,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{ServiceName: assignment, EdsConfig: &corev3.ConfigSource{
			ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}},
		ConnectTimeout: durationpb.New(poolConnectTimeout),
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
