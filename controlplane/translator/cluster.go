package translator

import (
	"fmt"
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	overridehostv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// makePoolCluster is the cluster of a pool's destination mode.
func makePoolCluster(p config.Pool, bufferLimit uint32) (*clusterv3.Cluster, error) {
	c := &clusterv3.Cluster{
		Name:           PoolClusterName(p.Name),
		ConnectTimeout: durationpb.New(poolConnectTimeout),
	}
	if err := SetPoolDestination(c, p, adsConfigSource(), bufferLimit); err != nil {
		return nil, err
	}
	return c, nil
}

// SetPoolDestination makes c pool p's destination: the cluster of p's
// mode, with circuit breakers and the buffer limit sized for LLM streams
// (limits c already sets are kept). eds is where an override_host pool's
// members come from: ADS for Inflow's own Envoys, the control plane's
// cluster for Envoy Gateway's. A cluster named otherwise than p's (Envoy
// Gateway's) asks for p's ClusterLoadAssignment by name.
func SetPoolDestination(c *clusterv3.Cluster, p config.Pool, eds *corev3.ConfigSource, bufferLimit uint32) error {
	c.CircuitBreakers = raiseCircuitBreakers(c.GetCircuitBreakers())
	if c.GetPerConnectionBufferLimitBytes().GetValue() < bufferLimit {
		c.PerConnectionBufferLimitBytes = wrapperspb.UInt32(bufferLimit)
	}
	// Whatever balanced c before does not apply to a pool.
	c.LoadAssignment, c.EdsClusterConfig, c.LoadBalancingPolicy = nil, nil, nil
	c.LbPolicy, c.LbConfig = clusterv3.Cluster_ROUND_ROBIN, nil
	if p.Destination.Effective() == config.DestinationOriginalDst {
		setOriginalDst(c)
		return nil
	}
	policy, err := overrideHostPolicy()
	if err != nil {
		return err
	}
	// The pool's endpoints are its members (served by EDS), so OverrideHost
	// can only ever pick one of them: an address the filter names that is
	// not a member is skipped.
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
	c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: eds}
	if name := PoolClusterName(p.Name); c.GetName() != name {
		c.EdsClusterConfig.ServiceName = name
	}
	c.LoadBalancingPolicy = policy
	c.CleanupInterval = nil
	return nil
}

// setOriginalDst makes c the Endpoint Picker protocol's classic cluster:
// Envoy connects to whichever ip:port the filter picked, read from envoy.lb
// metadata or, failing that, the x-gateway-destination-endpoint header. It
// takes one address, and a retry goes to the same one.
func setOriginalDst(c *clusterv3.Cluster) {
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
	c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	c.LbConfig = &clusterv3.Cluster_OriginalDstLbConfig_{OriginalDstLbConfig: &clusterv3.Cluster_OriginalDstLbConfig{
		UseHttpHeader:  true,
		HttpHeaderName: protocol.HeaderDestination,
		MetadataKey:    destinationMetadataKey(),
	}}
	c.CleanupInterval = durationpb.New(originalDstCleanup)
}

func destinationMetadataKey() *metadatav3.MetadataKey {
	return &metadatav3.MetadataKey{
		Key:  protocol.MetadataNamespaceLB,
		Path: []*metadatav3.MetadataKey_PathSegment{{Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: protocol.MetadataKeyDestination}}},
	}
}

// overrideHostPolicy reads the filter's ordered list from metadata alone:
// OverrideHost concatenates every source it is given, so adding the header
// (the primary again) would repeat the primary. Each pick (first try and
// every retry) takes the next listed member; past the list, least request
// picks, as Envoy Gateway's endpointOverride does.
func overrideHostPolicy() (*clusterv3.LoadBalancingPolicy, error) {
	fallback, err := typed("least request", &leastrequestv3.LeastRequest{})
	if err != nil {
		return nil, err
	}
	override, err := typed("override host", &overridehostv3.OverrideHost{
		OverrideHostSources: []*overridehostv3.OverrideHost_OverrideHostSource{{Metadata: destinationMetadataKey()}},
		FallbackPolicy: &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{
			TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: leastRequestPolicyName, TypedConfig: fallback},
		}}},
	})
	if err != nil {
		return nil, err
	}
	return &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{
		TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: overrideHostPolicyName, TypedConfig: override},
	}}}, nil
}

// makePoolEndpoints lists a pool's endpoints as its EDS cluster's members.
func makePoolEndpoints(p config.Pool) (*endpointv3.ClusterLoadAssignment, error) {
	lbs := make([]*endpointv3.LbEndpoint, 0, len(p.Endpoints))
	for _, ep := range p.Endpoints {
		ap, err := netip.ParseAddrPort(ep)
		if err != nil {
			return nil, fmt.Errorf("%w: pool %q: endpoint %q: %w", ErrTranslate, p.Name, ep, err)
		}
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: socketAddress(ap.Addr().String(), uint32(ap.Port())),
		}}})
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: PoolClusterName(p.Name)}
	if len(lbs) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}
	}
	return cla, nil
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
		CircuitBreakers:               raiseCircuitBreakers(nil),
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
	if b.APIKey != nil {
		opts, err := credentialOptions(b)
		if err != nil {
			return nil, err
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsName: opts}
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

// raiseCircuitBreakers lifts Envoy's default of 1024 concurrent
// connections, pending and active requests at the default priority to
// circuitBreakerLimit, keeping any limit cb already sets.
func raiseCircuitBreakers(cb *clusterv3.CircuitBreakers) *clusterv3.CircuitBreakers {
	if cb == nil {
		cb = &clusterv3.CircuitBreakers{}
	}
	var t *clusterv3.CircuitBreakers_Thresholds
	for _, th := range cb.GetThresholds() {
		if th.GetPriority() == corev3.RoutingPriority_DEFAULT {
			t = th
			break
		}
	}
	if t == nil {
		t = &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT}
		cb.Thresholds = append(cb.Thresholds, t)
	}
	for _, f := range []**wrapperspb.UInt32Value{&t.MaxConnections, &t.MaxPendingRequests, &t.MaxRequests} {
		if *f == nil {
			*f = wrapperspb.UInt32(circuitBreakerLimit)
		}
	}
	return cb
}
