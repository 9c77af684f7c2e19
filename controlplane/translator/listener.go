package translator

import (
	"fmt"
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inflow-gateway/inflow/controlplane/spec"
)

// typed validates a message that goes inside an Any (protoc-gen-validate
// does not look inside Anys) and packs it.
func typed(what string, m interface {
	proto.Message
	validator
}) (*anypb.Any, error) {
	if err := m.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrTranslate, what, err)
	}
	// Deterministic: Envoy (and the delta protocol's hashes) see a
	// byte-different Any as a changed resource, and a changed listener is
	// drained and rebuilt. Map fields (the plugin config's Struct) would
	// otherwise marshal in random order.
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrTranslate, what, err)
	}
	return a, nil
}

// makeListener builds a listener that depends on nothing a model, pool,
// endpoint or objective edit changes: those reach Envoy over ECDS, EDS, RDS
// and CDS, and a listener whose bytes stay the same is never drained.
func makeListener(l spec.Listener, logs *spec.AccessLog, bufferLimit uint32) (*listenerv3.Listener, error) {
	hcm, err := makeHCM(l, logs)
	if err != nil {
		return nil, err
	}
	chain := &listenerv3.FilterChain{
		Filters: []*listenerv3.Filter{{
			Name:       hcmFilterName,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}},
	}
	if l.TLS != nil {
		ts, err := downstreamTLS(l.TLS)
		if err != nil {
			return nil, err
		}
		chain.TransportSocket = ts
	}
	return &listenerv3.Listener{
		Name:    l.Name,
		Address: listenAddress(l.Address, l.Port),
		// The filter buffers whole inference bodies (StopAndBuffer); with
		// Envoy's 1 MiB default the HCM would answer 413 before the filter
		// ever sees a large prompt.
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(bufferLimit),
		FilterChains:                  []*listenerv3.FilterChain{chain},
	}, nil
}

func makeHCM(l spec.Listener, logs *spec.AccessLog) (*anypb.Any, error) {
	router, err := typed("router", &routerv3.Router{})
	if err != nil {
		return nil, err
	}
	replies, err := localReplyConfig()
	if err != nil {
		return nil, err
	}
	accessLog, err := accessLogs(logs)
	if err != nil {
		return nil, err
	}
	return typed("http connection manager", &hcmv3.HttpConnectionManager{
		StatPrefix: l.Name,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: RouteConfigName(l.Name),
			ConfigSource:    adsConfigSource(),
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			filterFromECDS(),
			{Name: routerFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
		},
		LocalReplyConfig: replies,
		AccessLog:        accessLog,
		// A stream (SSE) may be quiet for minutes; request_timeout 0 keeps
		// Envoy from cutting a long generation.
		StreamIdleTimeout:     durationpb.New(streamIdleTimeout),
		RequestTimeout:        durationpb.New(0),
		RequestHeadersTimeout: durationpb.New(requestHeadersTimeout),
		// Inflow is the edge: trust the peer address, not client-sent XFF.
		UseRemoteAddress: wrapperspb.Bool(true),
		NormalizePath:    wrapperspb.Bool(true),
		MergeSlashes:     true,
		// Hostnames are listed without ports; clients send Host with one.
		StripPortMode: &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true},
	})
}

// adsConfigSource says "get it over the same ADS stream".
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func downstreamTLS(t *spec.TLS) (*corev3.TransportSocket, error) {
	ctx, err := typed("downstream tls", &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificates: []*tlsv3.TlsCertificate{{
				CertificateChain: fileSource(t.CertFile),
				PrivateKey:       fileSource(t.KeyFile),
			}},
			// Let clients that speak HTTP/2 use it; the HCM codec is AUTO.
			AlpnProtocols: []string{"h2", "http/1.1"},
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

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// listenAddress is socketAddress for a bind: "::" also accepts IPv4, as a
// user writing "::" expects (Envoy binds v6-only otherwise).
func listenAddress(addr string, port uint32) *corev3.Address {
	a := socketAddress(addr, port)
	if ip, err := netip.ParseAddr(addr); err == nil && ip.IsUnspecified() && ip.Is6() {
		a.GetSocketAddress().Ipv4Compat = true
	}
	return a
}
