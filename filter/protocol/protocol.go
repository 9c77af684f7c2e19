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
	// HeaderBackend names the external backend the filter chose for a
	// model split across several (backend_refs); the model's routes match
	// it.
	HeaderBackend = "x-inflow-backend"
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

// Inflow's own dynamic metadata.
const (
	// MetadataNamespaceInflow is the namespace of what the filter tells the
	// rest of Envoy's config about a stream.
	MetadataNamespaceInflow = "io.inflow"
	// MetadataKeyOpenAIReply is set (true) just before the filter sends its
	// own local reply, which is already in the OpenAI shape: the HCM's
	// local_reply_config matches it first and leaves that reply alone, and
	// rewrites only Envoy's own replies.
	MetadataKeyOpenAIReply = "openai_reply"
	// ClusterMetadataKeyEGAssignment, in a pool cluster's metadata (in
	// MetadataNamespaceInflow), names the load assignment Envoy Gateway made
	// for the cluster before the extension server made it a pool
	// destination (the Envoy Gateway mode's PostTranslateModify keeps it
	// subscribed).
	ClusterMetadataKeyEGAssignment = "envoy_gateway_assignment"
)

// PluginName is the plugin_name the .so registers its filter under. A name
// the library does not know silently becomes a pass-through filter.
const PluginName = "inflow"

// Envoy AI Gateway's response-path dynamic metadata: the namespace token
// rate limits (cost.response.from: Metadata) and access logs read, the
// keys it writes besides the configured costs, and the conventional cost
// keys users configure (llmRequestCosts[].metadataKey).
const (
	MetadataNamespaceAIGateway   = "io.envoy.ai_gateway"
	MetadataKeyModelNameOverride = "model_name_override"
	MetadataKeyBackendName       = "backend_name"
	MetadataKeyResponseModel     = "response_model"
	// MetadataKeyTokenLatencyTTFT and MetadataKeyTokenLatencyITL are the
	// time to first token and the mean inter-token latency of a stream, in
	// milliseconds.
	MetadataKeyTokenLatencyTTFT = "token_latency_ttft"
	MetadataKeyTokenLatencyITL  = "token_latency_itl"

	CostKeyInputToken              = "llm_input_token"
	CostKeyOutputToken             = "llm_output_token"
	CostKeyTotalToken              = "llm_total_token"
	CostKeyCachedInputToken        = "llm_cached_input_token"
	CostKeyCacheCreationInputToken = "llm_cache_creation_input_token"
	CostKeyReasoningToken          = "llm_reasoning_token"
)

// vLLM's per-response ORCA load report (vllm-project/vllm#24905): a request
// carrying HeaderLoadMetricsFormat ("TEXT" or "JSON") gets the server's
// queue and KV-cache numbers in the HeaderLoadMetrics response header.
const (
	HeaderLoadMetricsFormat = "endpoint-load-metrics-format"
	HeaderLoadMetrics       = "endpoint-load-metrics"
)
