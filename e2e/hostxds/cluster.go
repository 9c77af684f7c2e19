package hostxds

import (
	"context"
	"fmt"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	"net"
	"net/netip"
	"os"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	credinjv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/credential_injector/v3"
	genericv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/injected_credentials/generic/v3"
	overridehostv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	credInjectorType       = "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector"
	upstreamCodecType      = "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"
	genericCredentialType  = "type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic"
	overrideHostType       = "type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost"
	leastRequestType       = "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest"
	roundRobinType         = "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin"
	// dnsTimeout bounds resolving a DNS cluster's hosts at update time.
	dnsTimeout = 5 * time.Second
)

type hostCluster struct {
	Name            string            `json:"name"`
	Hash            string            `json:"hash"`
	Type            string            `json:"type"`
	LbPolicy        string            `json:"lb_policy"`
	OriginalDst     *hostOriginalDst  `json:"original_dst,omitempty"`
	OverrideHost    *hostOverrideHost `json:"override_host,omitempty"`
	Endpoints       []string          `json:"endpoints"`
	ConnectTimeout  string            `json:"connect_timeout,omitempty"`
	BufferLimit     *uint32           `json:"per_connection_buffer_limit_bytes,omitempty"`
	CircuitBreakers map[string]uint32 `json:"circuit_breakers,omitempty"`
	Credential      *hostCredential   `json:"credential_injector,omitempty"`
	TLS             *hostTLS          `json:"tls,omitempty"`
	// localityWeighted: the policy weighs localities (locality_weighted_lb_config)
	localityWeighted bool
}

type hostOriginalDst struct {
	UseHTTPHeader  bool       `json:"use_http_header"`
	HTTPHeaderName string     `json:"http_header_name,omitempty"`
	MetadataKey    *hostMDKey `json:"metadata_key,omitempty"`
}

type hostMDKey struct {
	Key  string       `json:"key"`
	Path []hostMDPath `json:"path"`
}

type hostMDPath struct {
	Key string `json:"key"`
}

type hostOverrideHost struct {
	Sources  []hostOverrideSource `json:"sources"`
	Fallback string               `json:"fallback"`
}

type hostOverrideSource struct {
	Header   string     `json:"header,omitempty"`
	Metadata *hostMDKey `json:"metadata,omitempty"`
}

type hostCredential struct {
	Secret       string `json:"secret"`
	Header       string `json:"header"`
	Prefix       string `json:"header_value_prefix"`
	Overwrite    bool   `json:"overwrite"`
	AllowMissing bool   `json:"allow_request_without_credential"`
}

// clusterDeps are what a cluster warms on: its ClusterLoadAssignment (EDS)
// and the file an SDS secret is read from.
type clusterDeps struct {
	eds string
	// edsSource is the bootstrap cluster the assignment comes through ("" = ADS)
	edsSource    string
	fetchTimeout *time.Duration
	secret       string
	secretPath   string
	watchDir     string
}

// hostTLS is an UpstreamTlsContext envoyhost implements: verify the
// server against a CA bundle and a subject alt name, send SNI.
type hostTLS struct {
	SNI    string    `json:"sni,omitempty"`
	CAFile string    `json:"ca_file"`
	SANs   []hostSAN `json:"sans,omitempty"`
}

type hostSAN struct {
	Type  string `json:"type"` // DNS or IP_ADDRESS
	Exact string `json:"exact"`
}

func mdKey(k *metadatav3.MetadataKey) *hostMDKey {
	if k == nil {
		return nil
	}
	out := &hostMDKey{Key: k.GetKey()}
	for _, p := range k.GetPath() {
		out.Path = append(out.Path, hostMDPath{Key: p.GetKey()})
	}
	return out
}

func durationString(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	return fmt.Sprintf("%gs", d.AsDuration().Seconds())
}

// translateCluster turns a Cluster (and, for EDS, its assignment) into
// envoyhost's form. cla is nil until EDS delivered it.
func translateCluster(ctx context.Context, c *clusterv3.Cluster, cla *endpointv3.ClusterLoadAssignment, m mounts) (*hostCluster, clusterDeps, error) {
	var deps clusterDeps
	path := "Cluster " + c.GetName()
	if err := checkModelled(c, path); err != nil {
		return nil, deps, err
	}
	out := &hostCluster{Name: c.GetName(), ConnectTimeout: durationString(c.GetConnectTimeout()), Endpoints: []string{}}
	if bl := c.GetPerConnectionBufferLimitBytes(); bl != nil {
		v := bl.GetValue()
		out.BufferLimit = &v
	}
	for _, t := range c.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue // requests are DEFAULT priority here
		}
		out.CircuitBreakers = map[string]uint32{}
		for k, v := range map[string]*wrapperspb.UInt32Value{
			"max_connections": t.GetMaxConnections(), "max_pending_requests": t.GetMaxPendingRequests(),
			"max_requests": t.GetMaxRequests(), "max_retries": t.GetMaxRetries(),
		} {
			if v != nil {
				out.CircuitBreakers[k] = v.GetValue()
			}
		}
	}
	if err := lbPolicy(c, out, path); err != nil {
		return nil, deps, err
	}
	var hashCLA *endpointv3.ClusterLoadAssignment
	var err error
	switch c.GetType() {
	case clusterv3.Cluster_ORIGINAL_DST:
		out.Type = "ORIGINAL_DST"
		if out.LbPolicy != "CLUSTER_PROVIDED" {
			return nil, deps, fmt.Errorf("%s: ORIGINAL_DST needs lb_policy CLUSTER_PROVIDED", path)
		}
		o := c.GetOriginalDstLbConfig()
		out.OriginalDst = &hostOriginalDst{UseHTTPHeader: o.GetUseHttpHeader(), HTTPHeaderName: o.GetHttpHeaderName(), MetadataKey: mdKey(o.GetMetadataKey())}
	case clusterv3.Cluster_EDS:
		out.Type = "STATIC"
		src, err := configSource(c.GetEdsClusterConfig().GetEdsConfig(), path+".eds_cluster_config.eds_config")
		if err != nil {
			return nil, deps, err
		}
		deps.edsSource = src
		deps.eds = c.GetEdsClusterConfig().GetServiceName()
		if deps.eds == "" {
			deps.eds = c.GetName()
		}
		noteTimeout(&deps.fetchTimeout, c.GetEdsClusterConfig().GetEdsConfig())
		if cla != nil {
			if err := checkModelled(cla, "ClusterLoadAssignment "+deps.eds); err != nil {
				return nil, deps, err
			}
			eps, err := endpoints(ctx, cla, false, out.localityWeighted)
			if err != nil {
				return nil, deps, fmt.Errorf("%s: %w", path, err)
			}
			out.Endpoints = eps
			hashCLA = cla
		}
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_LOGICAL_DNS, clusterv3.Cluster_STRICT_DNS:
		out.Type = "STATIC"
		if out.LbPolicy == "CLUSTER_PROVIDED" {
			return nil, deps, fmt.Errorf("%s: CLUSTER_PROVIDED is for ORIGINAL_DST", path)
		}
		// DNS names are resolved here, once per update: envoyhost has no
		// resolver of its own (dns_refresh_rate is not followed)
		eps, err := endpoints(ctx, c.GetLoadAssignment(), c.GetType() != clusterv3.Cluster_STATIC, out.localityWeighted)
		if err != nil {
			return nil, deps, fmt.Errorf("%s: %w", path, err)
		}
		out.Endpoints = eps
	default:
		return nil, deps, fmt.Errorf("%w: %s.type %s", ErrNotModelled, path, c.GetType())
	}
	if err := upstreamFilters(c, out, &deps, path); err != nil {
		return nil, deps, err
	}
	if ts := c.GetTransportSocket(); ts != nil {
		if out.TLS, err = upstreamTLS(ts, m, path); err != nil {
			return nil, deps, err
		}
	}
	if hashCLA != nil {
		out.Hash, err = hashOf(c, hashCLA)
	} else {
		out.Hash, err = hashOf(c)
	}
	if len(out.Endpoints) > 0 && hashCLA == nil && c.GetType() != clusterv3.Cluster_STATIC {
		out.Hash += fmt.Sprint(out.Endpoints) // resolved addresses are part of what runs
	}
	return out, deps, err
}

func lbPolicy(c *clusterv3.Cluster, out *hostCluster, path string) error {
	if p := c.GetLoadBalancingPolicy(); p != nil {
		if len(p.GetPolicies()) == 0 {
			return fmt.Errorf("%s.load_balancing_policy: no policies", path)
		}
		// Envoy takes the first policy it supports; envoyhost supports these
		tec := p.GetPolicies()[0].GetTypedExtensionConfig()
		switch tec.GetTypedConfig().GetTypeUrl() {
		case overrideHostType:
			var oh overridehostv3.OverrideHost
			if err := tec.GetTypedConfig().UnmarshalTo(&oh); err != nil {
				return err
			}
			h := &hostOverrideHost{}
			for _, s := range oh.GetOverrideHostSources() {
				h.Sources = append(h.Sources, hostOverrideSource{Header: s.GetHeader(), Metadata: mdKey(s.GetMetadata())})
			}
			if len(h.Sources) == 0 {
				return fmt.Errorf("%s: OverrideHost needs override_host_sources", path)
			}
			fb := oh.GetFallbackPolicy().GetPolicies()
			if len(fb) == 0 {
				return fmt.Errorf("%s: OverrideHost needs a fallback_policy", path)
			}
			switch fb[0].GetTypedExtensionConfig().GetTypedConfig().GetTypeUrl() {
			case leastRequestType:
				var lr leastrequestv3.LeastRequest
				if err := fb[0].GetTypedExtensionConfig().GetTypedConfig().UnmarshalTo(&lr); err != nil {
					return err
				}
				h.Fallback = "LEAST_REQUEST"
				out.localityWeighted = lr.GetLocalityLbConfig().GetLocalityWeightedLbConfig() != nil
			case roundRobinType:
				h.Fallback = "ROUND_ROBIN"
			default:
				return fmt.Errorf("%w: %s: OverrideHost fallback %s", ErrNotModelled, path, fb[0].GetTypedExtensionConfig().GetTypedConfig().GetTypeUrl())
			}
			out.LbPolicy, out.OverrideHost = "OVERRIDE_HOST", h
		case leastRequestType:
			var lr leastrequestv3.LeastRequest
			if err := tec.GetTypedConfig().UnmarshalTo(&lr); err != nil {
				return err
			}
			out.LbPolicy = "LEAST_REQUEST"
			out.localityWeighted = lr.GetLocalityLbConfig().GetLocalityWeightedLbConfig() != nil
		case roundRobinType:
			out.LbPolicy = "ROUND_ROBIN"
		default:
			return fmt.Errorf("%w: %s.load_balancing_policy %s", ErrNotModelled, path, tec.GetTypedConfig().GetTypeUrl())
		}
		return nil
	}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		out.LbPolicy = "ROUND_ROBIN"
	case clusterv3.Cluster_LEAST_REQUEST:
		out.LbPolicy = "LEAST_REQUEST"
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		out.LbPolicy = "CLUSTER_PROVIDED"
	default:
		return fmt.Errorf("%w: %s.lb_policy %s", ErrNotModelled, path, c.GetLbPolicy())
	}
	return nil
}

// endpoints lists a load assignment's healthy ip:port addresses. The host
// balances unweighted and without localities, so it takes only what that
// is equivalent to: equal endpoint weights (weighted least request and
// round robin with equal weights are the unweighted ones); with
// locality-weighted balancing, localities without a weight are not used
// (LocalityLbEndpoints.load_balancing_weight: "if unspecified, the
// locality is ignored"; upstream_impl.cc HostSetImpl::chooseLocality skips
// zero weights) and at most one locality may remain.
func endpoints(ctx context.Context, cla *endpointv3.ClusterLoadAssignment, resolve, localityWeighted bool) ([]string, error) {
	weights, localities := map[uint32]bool{}, 0
	for _, l := range cla.GetEndpoints() {
		if localityWeighted && l.GetLoadBalancingWeight().GetValue() == 0 {
			continue
		}
		if len(l.GetLbEndpoints()) > 0 {
			localities++
		}
		for _, e := range l.GetLbEndpoints() {
			w := uint32(1) // the default weight
			if e.GetLoadBalancingWeight() != nil {
				w = e.GetLoadBalancingWeight().GetValue()
			}
			weights[w] = true
		}
	}
	if len(weights) > 1 {
		return nil, fmt.Errorf("%w: endpoints of different load_balancing_weight", ErrNotModelled)
	}
	if localityWeighted && localities > 1 {
		return nil, fmt.Errorf("%w: locality-weighted balancing across %d weighted localities", ErrNotModelled, localities)
	}
	out := []string{}
	for _, l := range cla.GetEndpoints() {
		if localityWeighted && l.GetLoadBalancingWeight().GetValue() == 0 {
			continue
		}
		for _, e := range l.GetLbEndpoints() {
			switch e.GetHealthStatus() {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
			default:
				continue // Envoy sends no traffic to unhealthy or draining hosts
			}
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, fmt.Errorf("%w: endpoint without a socket_address", ErrNotModelled)
			}
			host := sa.GetAddress()
			if _, err := netip.ParseAddr(host); err != nil {
				if !resolve {
					return nil, fmt.Errorf("endpoint %s is not an IP", host)
				}
				rctx, cancel := context.WithTimeout(ctx, dnsTimeout)
				ips, err := net.DefaultResolver.LookupNetIP(rctx, "ip4", host)
				cancel()
				if err != nil || len(ips) == 0 {
					// a DNS cluster that does not resolve has no hosts
					// (503 no healthy upstream); it is not an invalid config
					continue
				}
				host = ips[0].String()
			}
			out = append(out, joinHostPort(host, sa.GetPortValue()))
		}
	}
	return out, nil
}

// upstreamFilters reads the cluster's upstream HTTP filters: a credential
// injector with a file-based SDS secret, then the upstream codec.
func upstreamFilters(c *clusterv3.Cluster, out *hostCluster, deps *clusterDeps, path string) error {
	opts := c.GetTypedExtensionProtocolOptions()
	for k := range opts {
		if k != httpProtocolOptionsKey {
			return fmt.Errorf("%w: %s.typed_extension_protocol_options[%s]", ErrNotModelled, path, k)
		}
	}
	a, ok := opts[httpProtocolOptionsKey]
	if !ok {
		return nil
	}
	var po upstreamhttpv3.HttpProtocolOptions
	if err := a.UnmarshalTo(&po); err != nil {
		return err
	}
	ppath := path + ".typed_extension_protocol_options[" + httpProtocolOptionsKey + "]"
	if h := po.GetExplicitHttpConfig(); h != nil && (h.GetHttpProtocolOptions() == nil || proto.Size(h.GetHttpProtocolOptions()) != 0) {
		return fmt.Errorf("%w: %s.explicit_http_config: HTTP/1.1 with default options only", ErrNotModelled, ppath)
	}
	fs := po.GetHttpFilters()
	if len(fs) == 0 {
		return nil
	}
	if fs[len(fs)-1].GetTypedConfig().GetTypeUrl() != upstreamCodecType || len(fs) > 2 {
		return fmt.Errorf("%w: %s.http_filters: [credential_injector] then upstream_codec", ErrNotModelled, ppath)
	}
	if len(fs) == 1 {
		return nil
	}
	if fs[0].GetTypedConfig().GetTypeUrl() != credInjectorType {
		return fmt.Errorf("%w: %s.http_filters[0]: %s", ErrNotModelled, ppath, fs[0].GetTypedConfig().GetTypeUrl())
	}
	var ci credinjv3.CredentialInjector
	if err := fs[0].GetTypedConfig().UnmarshalTo(&ci); err != nil {
		return err
	}
	cred := ci.GetCredential()
	if cred.GetTypedConfig().GetTypeUrl() != genericCredentialType {
		return fmt.Errorf("%w: %s: credential %s (generic only)", ErrNotModelled, ppath, cred.GetTypedConfig().GetTypeUrl())
	}
	var g genericv3.Generic
	if err := cred.GetTypedConfig().UnmarshalTo(&g); err != nil {
		return err
	}
	sds := g.GetCredential()
	pcs := sds.GetSdsConfig().GetPathConfigSource()
	if pcs == nil || pcs.GetPath() == "" {
		return fmt.Errorf("%w: %s: the secret's sds_config must be a path_config_source", ErrNotModelled, ppath)
	}
	header := g.GetHeader()
	if header == "" {
		header = "authorization"
	}
	out.Credential = &hostCredential{Secret: sds.GetName(), Header: header, Prefix: g.GetHeaderValuePrefix(),
		Overwrite: ci.GetOverwrite(), AllowMissing: ci.GetAllowRequestWithoutCredential()}
	deps.secret, deps.secretPath, deps.watchDir = sds.GetName(), pcs.GetPath(), pcs.GetWatchedDirectory().GetPath()
	return nil
}

const tlsSocketType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"

// upstreamTLS reads the one TLS shape envoyhost implements: a CA bundle
// (which must load, or Envoy rejects the cluster), exact SAN matchers, SNI.
func upstreamTLS(ts *corev3.TransportSocket, m mounts, path string) (*hostTLS, error) {
	tpath := path + ".transport_socket"
	if ts.GetTypedConfig().GetTypeUrl() != tlsSocketType {
		return nil, fmt.Errorf("%w: %s: %s (upstream TLS only)", ErrNotModelled, tpath, ts.GetTypedConfig().GetTypeUrl())
	}
	var u tlsv3.UpstreamTlsContext
	if err := ts.GetTypedConfig().UnmarshalTo(&u); err != nil {
		return nil, err
	}
	vc := u.GetCommonTlsContext().GetValidationContext()
	ca := vc.GetTrustedCa().GetFilename()
	if ca == "" {
		return nil, fmt.Errorf("%w: %s: a validation_context with a trusted_ca file", ErrNotModelled, tpath)
	}
	local := m.local(ca)
	if _, err := os.Stat(local); err != nil {
		return nil, fmt.Errorf("%s: failed to load trusted CA certificates from %s: %w", tpath, ca, err)
	}
	out := &hostTLS{SNI: u.GetSni(), CAFile: local}
	for _, s := range vc.GetMatchTypedSubjectAltNames() {
		exact := s.GetMatcher().GetExact()
		if exact == "" {
			return nil, fmt.Errorf("%w: %s: subject alt name matchers other than exact", ErrNotModelled, tpath)
		}
		switch s.GetSanType() {
		case tlsv3.SubjectAltNameMatcher_DNS, tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
			out.SANs = append(out.SANs, hostSAN{Type: s.GetSanType().String(), Exact: exact})
		default:
			return nil, fmt.Errorf("%w: %s: san_type %s", ErrNotModelled, tpath, s.GetSanType())
		}
	}
	return out, nil
}
