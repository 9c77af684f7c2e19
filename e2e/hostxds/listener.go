package hostxds

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	healthcheckv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
)

// Names and type URLs Envoy knows these extensions by.
const (
	hcmName            = "envoy.filters.network.http_connection_manager"
	golangName         = "envoy.filters.http.golang"
	golangTypeURL      = "type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.Config"
	routerTypeURL      = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	hcmTypeURL         = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	perRouteGolang     = "type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.ConfigsPerRoute"
	healthCheckTypeURL = "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck"
)

// hostListener is what envoyhost reads for one listener (chain.c).
type hostListener struct {
	Name        string          `json:"name"`
	Address     string          `json:"address"`
	Hash        string          `json:"hash"`
	BufferLimit *uint32         `json:"per_connection_buffer_limit_bytes,omitempty"`
	HCM         json.RawMessage `json:"hcm"`
	Golang      *golangRef      `json:"golang,omitempty"`
	// golangFilter is the chain's golang filter name (listenerDeps.golang).
	golangFilter string
}

// golangRef is the listener's golang filter: its ECDS resource name, or
// its inline config.
type golangRef struct {
	ECDS   string      `json:"ecds,omitempty"`
	Inline *hostGolang `json:"inline,omitempty"`
}

// hostGolang is one golang filter config: the plugin_config goes to Go as
// the serialized Any, exactly the bytes FilterConfig::newGoPluginConfig passes.
type hostGolang struct {
	Name         string `json:"name,omitempty"`
	LibraryID    string `json:"library_id"`
	LibraryPath  string `json:"library_path"`
	PluginName   string `json:"plugin_name"`
	PluginConfig []byte `json:"plugin_config"`
	Hash         string `json:"hash"`
}

// listenerDeps are the resources a listener warms on (lds.rst: a listener
// is warmed before it takes traffic).
type listenerDeps struct {
	rds, ecds string
	// ecdsSource is the bootstrap cluster the ECDS resource comes through
	// ("" = ADS)
	ecdsSource string
	// golang is the name of the chain's golang filter, which per-route
	// configs are keyed by ("" when the chain has none).
	golang string
	// healthCheck is the health_check filter's config for the host
	healthCheck map[string]any
	// suppressEnvoyHeaders is the router's suppress_envoy_headers
	suppressEnvoyHeaders bool
	// fetchTimeout is the shortest initial_fetch_timeout of their config
	// sources (nil: Envoy's default; 0: wait for ever).
	fetchTimeout *time.Duration
}

// noteTimeout records a config source's initial_fetch_timeout.
func noteTimeout(cur **time.Duration, cs *corev3.ConfigSource) {
	d := cs.GetInitialFetchTimeout()
	if d == nil {
		return
	}
	v := d.AsDuration()
	if *cur == nil || (v > 0 && (**cur == 0 || v < **cur)) {
		*cur = &v
	}
}

func newHostGolang(name string, g *golangv3alpha.Config) (*hostGolang, error) {
	if g.GetPluginName() == "" {
		return nil, fmt.Errorf("golang filter config %q: plugin_name is empty", name)
	}
	cfg, err := proto.MarshalOptions{Deterministic: true}.Marshal(g.GetPluginConfig())
	if err != nil {
		return nil, err
	}
	h, err := hashOf(g)
	if err != nil {
		return nil, err
	}
	return &hostGolang{Name: name, LibraryID: g.GetLibraryId(), LibraryPath: g.GetLibraryPath(),
		PluginName: g.GetPluginName(), PluginConfig: cfg, Hash: h}, nil
}

func translateListener(l *listenerv3.Listener) (*hostListener, listenerDeps, error) {
	var deps listenerDeps
	path := "Listener " + l.GetName()
	if err := checkModelled(l, path); err != nil {
		return nil, deps, err
	}
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil || sa.GetProtocol() != corev3.SocketAddress_TCP {
		return nil, deps, fmt.Errorf("%w: %s.address: only a TCP socket_address", ErrNotModelled, path)
	}
	// With no filter_chain_match modelled, the listener has one chain: in
	// filter_chains, or the default chain, which every connection then
	// takes (FilterChainManagerImpl::findFilterChain falls back to it).
	chains := l.GetFilterChains()
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(chains, dc)
	}
	if len(chains) != 1 || len(chains[0].GetFilters()) != 1 {
		return nil, deps, fmt.Errorf("%w: %s.filter_chains: exactly one chain with one filter (the HCM)", ErrNotModelled, path)
	}
	if err := listenerLogs(l, path); err != nil {
		return nil, deps, err
	}
	f := chains[0].GetFilters()[0]
	if f.GetTypedConfig().GetTypeUrl() != hcmTypeURL {
		return nil, deps, fmt.Errorf("%w: %s.filter_chains[0].filters[0]: %s is not the HTTP connection manager", ErrNotModelled, path, f.GetName())
	}
	var hcm hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		return nil, deps, fmt.Errorf("%s: %w", path, err)
	}
	hpath := path + ".hcm"
	switch hcm.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO, hcmv3.HttpConnectionManager_HTTP1:
	default:
		return nil, deps, fmt.Errorf("%w: %s.codec_type %s: HTTP/1.1 only", ErrNotModelled, hpath, hcm.GetCodecType())
	}
	if g := hcm.GetGenerateRequestId(); g != nil && !g.GetValue() {
		return nil, deps, fmt.Errorf("%w: %s.generate_request_id false", ErrNotModelled, hpath)
	}
	golang, err := golangFilter(&hcm, hpath, &deps)
	if err != nil {
		return nil, deps, err
	}
	var routeConfig json.RawMessage
	switch {
	case hcm.GetRds() != nil:
		if err := adsOnly(hcm.GetRds().GetConfigSource(), hpath+".rds.config_source"); err != nil {
			return nil, deps, err
		}
		deps.rds = hcm.GetRds().GetRouteConfigName()
		noteTimeout(&deps.fetchTimeout, hcm.GetRds().GetConfigSource())
	case hcm.GetRouteConfig() != nil:
		if routeConfig, err = translateRouteConfig(hcm.GetRouteConfig(), []string{deps.golang}); err != nil {
			return nil, deps, err
		}
	default:
		return nil, deps, fmt.Errorf("%w: %s: neither rds nor route_config", ErrNotModelled, hpath)
	}
	// envoyhost reads the HCM's settings from its proto3 JSON; the parts it
	// gets differently (filters, routes) are taken out.
	rest := proto.Clone(&hcm).(*hcmv3.HttpConnectionManager)
	rest.HttpFilters, rest.RouteSpecifier = nil, nil
	// HTTP/2 settings: the host's codec is HTTP/1.1 only (an h2 client is
	// not served), so they configure nothing it runs
	rest.Http2ProtocolOptions = nil
	m, err := protoMap(rest)
	if err != nil {
		return nil, deps, err
	}
	if deps.suppressEnvoyHeaders {
		m["router_suppress_envoy_headers"] = true
	}
	if deps.healthCheck != nil {
		m["health_check"] = deps.healthCheck
	}
	if deps.rds != "" {
		m["rds_route_config_name"] = deps.rds
	} else {
		m["route_config"] = routeConfig
	}
	hcmJSON, err := json.Marshal(m)
	if err != nil {
		return nil, deps, err
	}
	h, err := hashOf(l)
	if err != nil {
		return nil, deps, err
	}
	out := &hostListener{
		Name: l.GetName(), Address: joinHostPort(sa.GetAddress(), sa.GetPortValue()), Hash: h,
		HCM: hcmJSON, Golang: golang, golangFilter: deps.golang,
	}
	if bl := l.GetPerConnectionBufferLimitBytes(); bl != nil {
		v := bl.GetValue()
		out.BufferLimit = &v
	}
	return out, deps, nil
}

// golangFilter checks http_filters: at most one golang filter (inline or
// over ECDS), then the router, last.
func golangFilter(hcm *hcmv3.HttpConnectionManager, path string, deps *listenerDeps) (*golangRef, error) {
	filters := hcm.GetHttpFilters()
	if len(filters) == 0 || filters[len(filters)-1].GetTypedConfig().GetTypeUrl() != routerTypeURL {
		return nil, fmt.Errorf("%w: %s.http_filters: the router must be the last filter", ErrNotModelled, path)
	}
	var router routerv3.Router
	if err := filters[len(filters)-1].GetTypedConfig().UnmarshalTo(&router); err != nil {
		return nil, err
	}
	deps.suppressEnvoyHeaders = router.GetSuppressEnvoyHeaders()
	filters = filters[:len(filters)-1]
	if len(filters) > 0 && filters[0].GetTypedConfig().GetTypeUrl() == healthCheckTypeURL {
		hc, err := healthCheck(filters[0], path)
		if err != nil {
			return nil, err
		}
		deps.healthCheck = hc
		filters = filters[1:]
	}
	if len(filters) > 1 {
		return nil, fmt.Errorf("%w: %s.http_filters: envoyhost runs [health_check] -> [golang] -> router, not %d filters before the router", ErrNotModelled, path, len(filters))
	}
	if len(filters) == 0 {
		return nil, nil
	}
	f := filters[0]
	deps.golang = f.GetName()
	fpath := fmt.Sprintf("%s.http_filters[0](%s)", path, f.GetName())
	if f.GetIsOptional() || f.GetDisabled() {
		return nil, fmt.Errorf("%w: %s: is_optional/disabled", ErrNotModelled, fpath)
	}
	if cd := f.GetConfigDiscovery(); cd != nil {
		if cd.GetDefaultConfig() != nil || cd.GetApplyDefaultConfigWithoutWarming() {
			return nil, fmt.Errorf("%w: %s.config_discovery.default_config", ErrNotModelled, fpath)
		}
		if len(cd.GetTypeUrls()) != 1 || cd.GetTypeUrls()[0] != golangTypeURL {
			return nil, fmt.Errorf("%w: %s.config_discovery.type_urls %v: only %s", ErrNotModelled, fpath, cd.GetTypeUrls(), golangTypeURL)
		}
		src, err := configSource(cd.GetConfigSource(), fpath+".config_discovery.config_source")
		if err != nil {
			return nil, err
		}
		deps.ecds, deps.ecdsSource = f.GetName(), src
		noteTimeout(&deps.fetchTimeout, cd.GetConfigSource())
		return &golangRef{ECDS: f.GetName()}, nil
	}
	if f.GetTypedConfig().GetTypeUrl() != golangTypeURL {
		return nil, fmt.Errorf("%w: %s: filter type %s (envoyhost runs the golang filter only)", ErrNotModelled, fpath, f.GetTypedConfig().GetTypeUrl())
	}
	var g golangv3alpha.Config
	if err := f.GetTypedConfig().UnmarshalTo(&g); err != nil {
		return nil, fmt.Errorf("%s: %w", fpath, err)
	}
	hg, err := newHostGolang("", &g)
	if err != nil {
		return nil, err
	}
	return &golangRef{Inline: hg}, nil
}

func adsOnly(cs *corev3.ConfigSource, path string) error {
	if cs.GetAds() == nil {
		return fmt.Errorf("%w: %s: only ads config sources", ErrNotModelled, path)
	}
	return nil
}

// translateExtensionConfig takes an ECDS resource: the golang filter's config.
func translateExtensionConfig(tec *corev3.TypedExtensionConfig) (*hostGolang, error) {
	path := "TypedExtensionConfig " + tec.GetName()
	if err := checkModelled(tec, path); err != nil {
		return nil, err
	}
	if tec.GetTypedConfig().GetTypeUrl() != golangTypeURL {
		return nil, fmt.Errorf("%w: %s: type %s (envoyhost runs the golang filter only)", ErrNotModelled, path, tec.GetTypedConfig().GetTypeUrl())
	}
	var g golangv3alpha.Config
	if err := tec.GetTypedConfig().UnmarshalTo(&g); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return newHostGolang(tec.GetName(), &g)
}

// listenerLogs accepts listener access logs only when they can never be
// written by the host: Envoy writes them for a connection that matched no
// filter chain (flag NR) and when a connection ends
// (source/common/listener_manager/active_stream_listener_base.cc:19-40,
// 101-102), and the HCM sets no flags on the connection's stream info. A
// log filtered on NR alone (what Envoy Gateway emits) therefore never
// fires on a listener with one chain for every connection; any other is
// refused.
func listenerLogs(l *listenerv3.Listener, path string) error {
	for i, al := range l.GetAccessLog() {
		flags := al.GetFilter().GetResponseFlagFilter().GetFlags()
		if len(flags) == 0 || slices.ContainsFunc(flags, func(f string) bool { return f != "NR" }) {
			return fmt.Errorf("%w: %s.access_log[%d]: only logs filtered on response flag NR (no filter chain)", ErrNotModelled, path, i)
		}
	}
	return nil
}

// healthCheck reads a health_check filter the host runs: not in pass
// through mode (it answers matching requests itself; pass through mode
// depends on upstream health the host does not track), without a cache
// or cluster health thresholds (refused by the allowlist).
func healthCheck(f *hcmv3.HttpFilter, path string) (map[string]any, error) {
	var hc healthcheckv3.HealthCheck
	if err := f.GetTypedConfig().UnmarshalTo(&hc); err != nil {
		return nil, err
	}
	if hc.GetPassThroughMode().GetValue() {
		return nil, fmt.Errorf("%w: %s.http_filters[0](%s).pass_through_mode true", ErrNotModelled, path, f.GetName())
	}
	if f.GetIsOptional() || f.GetDisabled() {
		return nil, fmt.Errorf("%w: %s.http_filters[0](%s): is_optional/disabled", ErrNotModelled, path, f.GetName())
	}
	hs := []any{}
	for _, h := range hc.GetHeaders() {
		m, err := protoMap(h)
		if err != nil {
			return nil, err
		}
		hs = append(hs, m)
	}
	return map[string]any{"headers": hs}, nil
}
