package translator

import (
	"errors"
	"fmt"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// ErrNoGolangFilter means a listener does not run the Inflow filter.
var ErrNoGolangFilter = errors.New("listener has no golang filter")

// GolangFilter returns the golang filter config of a listener as Envoy
// would receive it over LDS: tests (and tools) use it to hand the exact
// plugin_config to the filter's own parser.
func GolangFilter(l *listenerv3.Listener) (*golangv3alpha.Config, error) {
	for _, chain := range l.GetFilterChains() {
		for _, f := range chain.GetFilters() {
			if f.GetName() != hcmFilterName {
				continue
			}
			var hcm hcmv3.HttpConnectionManager
			if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
				return nil, fmt.Errorf("listener %q: http connection manager: %w", l.GetName(), err)
			}
			for _, hf := range hcm.GetHttpFilters() {
				if hf.GetName() != golangFilterName {
					continue
				}
				var g golangv3alpha.Config
				if err := hf.GetTypedConfig().UnmarshalTo(&g); err != nil {
					return nil, fmt.Errorf("listener %q: golang filter: %w", l.GetName(), err)
				}
				return &g, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNoGolangFilter, l.GetName())
}
