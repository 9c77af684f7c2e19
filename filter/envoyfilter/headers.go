package envoyfilter

// Header and metadata keys the filter reads and writes, as Envoy AI Gateway
// and the Gateway API Inference Extension's endpoint-picker protocol name
// them.
const (
	// HeaderModel carries the client-facing model; routes match on it.
	HeaderModel = "x-ai-eg-model"
	// HeaderDestination carries the chosen endpoint "ip:port"; ORIGINAL_DST
	// clusters with use_http_header route on it.
	HeaderDestination = "x-gateway-destination-endpoint"
	// MetadataNamespaceLB is the dynamic metadata namespace Envoy's
	// ORIGINAL_DST load balancer reads (metadata_key).
	MetadataNamespaceLB = "envoy.lb"
	// MetadataKeyDestination is the key of the chosen endpoint(s) in
	// MetadataNamespaceLB.
	MetadataKeyDestination = "x-gateway-destination-endpoint"

	headerContentLength = "content-length"
	headerContentType   = "content-type"
	contentTypeJSON     = "application/json"
	pathModels          = "/v1/models"
)
