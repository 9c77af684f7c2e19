package translator

import (
	"fmt"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// FilterExtensionName names the ECDS resource that carries the filter
// config, and the listeners' HTTP filter that takes it: Envoy subscribes to
// an HttpFilter's own name and refuses a resource named otherwise
// (source/common/http/filter_chain_helper.h:130,190,
// source/common/filter/config_discovery_impl.cc:119). All listeners share
// it, so one update reaches them all.
const FilterExtensionName = "inflow"

// golangConfigTypeURL is the one type the listeners accept for it.
var golangConfigTypeURL = "type.googleapis.com/" + string((&golangv3alpha.Config{}).ProtoReflect().Descriptor().FullName())

// makeFilterExtension wraps the filter config for ECDS: the golang filter's
// Config (library, plugin name, plugin_config), refused here if the
// filter's own parser refuses it.
func makeFilterExtension(fc *config.Config, libraryPath string) (*corev3.TypedExtensionConfig, error) {
	// Deterministic bytes (config.ToAny): Envoy skips an ECDS update whose
	// bytes did not change.
	pluginConfig, err := config.ToAny(fc)
	if err != nil {
		return nil, fmt.Errorf("%w: plugin config: %w", ErrTranslate, err)
	}
	if _, err := config.FromAny(pluginConfig); err != nil {
		return nil, fmt.Errorf("%w: the filter rejects its config: %w", ErrTranslate, err)
	}
	golang, err := typed("golang filter", &golangv3alpha.Config{
		LibraryId:    libraryID,
		LibraryPath:  libraryPath,
		PluginName:   protocol.PluginName,
		PluginConfig: pluginConfig,
	})
	if err != nil {
		return nil, err
	}
	ext := &corev3.TypedExtensionConfig{Name: FilterExtensionName, TypedConfig: golang}
	if err := check("extension config", ext.GetName(), ext); err != nil {
		return nil, err
	}
	return ext, nil
}

// filterFromECDS is the listeners' golang filter: no inline config and no
// default_config, so Envoy keeps a new listener warming (not accepting
// connections) until the filter config has arrived. initial_fetch_timeout
// 0 keeps it warming for as long as that takes: after Envoy's default 15 s
// it would start listening with a filter that answers every request 500
// (config_discovery_impl.cc:188-192, filter_chain_helper.h:29-43).
func filterFromECDS() *hcmv3.HttpFilter { return FilterFromECDS(adsConfigSource()) }

// FilterFromECDS is the listeners' golang filter taking its config from
// src: ADS for Inflow's own Envoys, the control plane's cluster for Envoy
// Gateway's (whose ADS is Envoy Gateway's). src is modified.
func FilterFromECDS(src *corev3.ConfigSource) *hcmv3.HttpFilter {
	src.InitialFetchTimeout = durationpb.New(0)
	return &hcmv3.HttpFilter{
		Name: FilterExtensionName,
		ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
			ConfigSource: src,
			TypeUrls:     []string{golangConfigTypeURL},
		}},
	}
}
