package translator

import (
	"fmt"
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// makePoolCluster is the Endpoint Picker protocol's cluster: Envoy connects
// to whichever ip:port the filter picked, read from envoy.lb metadata or,
// failing that, the x-gateway-destination-endpoint header.
func makePoolCluster(pool string, bufferLimit uint32) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 PoolClusterName(pool),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		LbConfig: &clusterv3.Cluster_OriginalDstLbConfig_{OriginalDstLbConfig: &clusterv3.Cluster_OriginalDstLbConfig{
			UseHttpHeader:  true,
			HttpHeaderName: protocol.HeaderDestination,
			MetadataKey: &metadatav3.MetadataKey{
				Key: protocol.MetadataNamespaceLB,
				Path: []*metadatav3.MetadataKey_PathSegment{{
					Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: protocol.MetadataKeyDestination},
				}},
			},
		}},
		ConnectTimeout:                durationpb.New(poolConnectTimeout),
		CleanupInterval:               durationpb.New(originalDstCleanup),
		CircuitBreakers:               raisedCircuitBreakers(),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(bufferLimit),
	}
}

// makeBackendCluster reaches an external OpenAI-compatible service by DNS.
// LOGICAL_DNS rather than STRICT_DNS: public APIs sit behind many rotating
// addresses, and Envoy documents LOGICAL_DNS for large web services (one
// connection target at a time, no per-address host set to churn).
func makeBackendCluster(b spec.Backend, bufferLimit uint32) (*clusterv3.Cluster, error) {
	u, err := spec.ParseBaseURL(b.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: backend %q: %w", ErrTranslate, b.Name, err)
	}
	name := BackendClusterName(b.Name)
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		// Many container networks have no IPv6 route; prefer v4.
		DnsLookupFamily: clusterv3.Cluster_V4_PREFERRED,
		DnsRefreshRate:  durationpb.New(dnsRefresh),
		ConnectTimeout:  durationpb.New(backendConnectTimeout),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socketAddress(u.Host, u.Port),
					}},
				}},
			}},
		},
		CircuitBreakers:               raisedCircuitBreakers(),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(bufferLimit),
	}
	if _, err := netip.ParseAddr(u.Host); err == nil {
		// An IP literal needs no resolver.
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
		c.DnsLookupFamily, c.DnsRefreshRate = clusterv3.Cluster_AUTO, nil
	}
	if u.TLS {
		ts, err := upstreamTLS(u.Host, b.CAFile)
		if err != nil {
			return nil, err
		}
		c.TransportSocket = ts
	}
	return c, nil
}

// upstreamTLS verifies the backend against a CA bundle and sends SNI;
// without a validation context Envoy would accept any certificate.
func upstreamTLS(host, caFile string) (*corev3.TransportSocket, error) {
	if caFile == "" {
		caFile = spec.DefaultCAFile
	}
	ctx, err := typed("upstream tls", &tlsv3.UpstreamTlsContext{
		Sni: host,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: fileSource(caFile),
				// SNI alone does not make Envoy check the name: match it.
				// DNS SAN matching accepts wildcard certificates.
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: sanType(host),
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: host}},
				}},
			}},
		},
	})
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{
		Name:       tlsSocketName,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: ctx},
	}, nil
}

func sanType(host string) tlsv3.SubjectAltNameMatcher_SanType {
	if _, err := netip.ParseAddr(host); err == nil {
		return tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	}
	return tlsv3.SubjectAltNameMatcher_DNS
}

func raisedCircuitBreakers() *clusterv3.CircuitBreakers {
	limit := wrapperspb.UInt32(circuitBreakerLimit)
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     limit,
		MaxPendingRequests: limit,
		MaxRequests:        limit,
	}}}
}
