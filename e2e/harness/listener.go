package harness

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/inflow-gateway/inflow/controlplane/translator"
)

// ListenerFilter is what envoyhost needs of an LDS listener: its golang
// filter's plugin name and plugin_config, and the buffer limit Envoy would
// apply.
type ListenerFilter struct {
	Plugin string
	// Config is the plugin_config in the proto3 JSON form Envoy's YAML
	// carries, which is what envoyhost reads (HostOptions.RawConfig).
	Config      []byte
	BufferLimit int
}

// FromListener takes the golang filter config of l as Envoy assembles it:
// from the listener and the ECDS resource (of extensions) it names.
func FromListener(l *listenerv3.Listener, extensions map[string]*corev3.TypedExtensionConfig) (ListenerFilter, error) {
	g, err := translator.GolangFilter(l, extensions)
	if err != nil {
		return ListenerFilter{}, err
	}
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(g.GetPluginConfig())
	if err != nil {
		return ListenerFilter{}, err
	}
	return ListenerFilter{
		Plugin: g.GetPluginName(), Config: raw,
		BufferLimit: int(l.GetPerConnectionBufferLimitBytes().GetValue()),
	}, nil
}
