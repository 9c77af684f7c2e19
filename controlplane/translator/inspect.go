package translator

import (
	"errors"
	"fmt"
	"slices"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// ErrNoGolangFilter means a listener does not run the Inflow filter.
var ErrNoGolangFilter = errors.New("listener has no golang filter")

// httpFilters are the HTTP filters of every HCM of l, its default filter
// chain's included (Envoy Gateway's listeners use one).
func httpFilters(l *listenerv3.Listener) ([]*hcmv3.HttpFilter, error) {
	var out []*hcmv3.HttpFilter
	chains := l.GetFilterChains()
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(slices.Clip(chains), dc)
	}
	for _, chain := range chains {
		for _, f := range chain.GetFilters() {
			if f.GetName() != hcmFilterName {
				continue
			}
			var hcm hcmv3.HttpConnectionManager
			if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
				return nil, fmt.Errorf("listener %q: http connection manager: %w", l.GetName(), err)
			}
			out = append(out, hcm.GetHttpFilters()...)
		}
	}
	return out, nil
}

// ExtensionNames lists the ECDS resources l's HTTP filters subscribe to
// (an HttpFilter with config_discovery subscribes to its own name).
func ExtensionNames(l *listenerv3.Listener) ([]string, error) {
	filters, err := httpFilters(l)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, hf := range filters {
		if hf.GetConfigDiscovery() != nil {
			names = append(names, hf.GetName())
		}
	}
	return names, nil
}

// GolangFilter returns the golang filter config l runs, as Envoy assembles
// it: inline (typed_config, as Envoy Gateway patches it in) or the ECDS
// resource its config_discovery names, looked up in extensions. Tests and
// tools use it to hand the exact plugin_config to the filter's parser.
func GolangFilter(l *listenerv3.Listener, extensions map[string]*corev3.TypedExtensionConfig) (*golangv3alpha.Config, error) {
	filters, err := httpFilters(l)
	if err != nil {
		return nil, err
	}
	for _, hf := range filters {
		typedConfig := hf.GetTypedConfig()
		if cd := hf.GetConfigDiscovery(); cd != nil {
			ext, ok := extensions[hf.GetName()]
			if !ok {
				continue // another filter's ECDS resource, or not delivered
			}
			typedConfig = ext.GetTypedConfig()
		}
		if typedConfig.GetTypeUrl() != golangConfigTypeURL {
			continue
		}
		var g golangv3alpha.Config
		if err := typedConfig.UnmarshalTo(&g); err != nil {
			return nil, fmt.Errorf("listener %q: golang filter: %w", l.GetName(), err)
		}
		return &g, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrNoGolangFilter, l.GetName())
}

// ExtensionsByName indexes ECDS resources by name.
func ExtensionsByName(exts []*corev3.TypedExtensionConfig) map[string]*corev3.TypedExtensionConfig {
	m := make(map[string]*corev3.TypedExtensionConfig, len(exts))
	for _, e := range exts {
		m[e.GetName()] = e
	}
	return m
}
