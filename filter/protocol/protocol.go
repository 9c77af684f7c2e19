// Package protocol is the one home of the names Inflow shares with Envoy,
// Envoy AI Gateway and the Gateway API Inference Extension's endpoint-picker
// protocol: request headers, dynamic-metadata namespaces and keys, the
// plugin name, and the names of the stats the filter defines in Envoy. The
// filter, the control plane and the tests import these; none of them spells
// the strings itself.
package protocol

// Request headers.
const (
	// HeaderModel carries the client-facing model the filter read from the
	// body (Envoy AI Gateway's name); routes match it exactly.
	HeaderModel = "x-ai-eg-model"
	// HeaderDestination carries the primary endpoint "ip:port" the filter
	// picked (endpoint-picker protocol); ORIGINAL_DST clusters read it.
	HeaderDestination = "x-gateway-destination-endpoint"
	// HeaderObjective names a request's InferenceObjective; the config maps
	// it to a priority (< 0 is sheddable).
	HeaderObjective = "x-gateway-inference-objective"
)

// Dynamic metadata.
const (
	// MetadataNamespaceLB is the namespace Envoy's load balancers read
	// destination overrides from.
	MetadataNamespaceLB = "envoy.lb"
	// MetadataKeyDestination holds the picked endpoint(s) in
	// MetadataNamespaceLB: the ordered list "ip:port,ip:port", primary first.
	MetadataKeyDestination = "x-gateway-destination-endpoint"
)

// PluginName is the plugin_name the .so registers its filter under. A name
// the library does not know silently becomes a pass-through filter.
const PluginName = "inflow"
