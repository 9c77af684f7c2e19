package hostxds

import (
	"encoding/json"
	"fmt"
	"time"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
)

// Names and type URLs Envoy knows these extensions by.
const (
	hcmName        = "envoy.filters.network.http_connection_manager"
	golangName     = "envoy.filters.http.golang"
	golangTypeURL  = "type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.Config"
	routerTypeURL  = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	hcmTypeURL     = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	perRouteGolang = "type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.ConfigsPerRoute"
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
	// golang is the name of the chain's golang filter, which per-route
	// configs are keyed by ("" when the chain has none).
	golang string
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
	if len(l.GetFilterChains()) != 1 || len(l.GetFilterChains()[0].GetFilters()) != 1 {
		return nil, deps, fmt.Errorf("%w: %s.filter_chains: exactly one chain with one filter (the HCM)", ErrNotModelled, path)
	}
	f := l.GetFilterChains()[0].GetFilters()[0]
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
	m, err := protoMap(rest)
	if err != nil {
		return nil, deps, err
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
	if len(filters) > 2 {
		return nil, fmt.Errorf("%w: %s.http_filters: envoyhost runs [golang] -> router, not %d filters", ErrNotModelled, path, len(filters))
	}
	if len(filters) == 1 {
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
		if err := adsOnly(cd.GetConfigSource(), fpath+".config_discovery.config_source"); err != nil {
			return nil, err
		}
		deps.ecds = f.GetName()
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
