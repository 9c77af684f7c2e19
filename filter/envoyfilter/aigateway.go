package envoyfilter

import (
	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/cost"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/usage"
)

// writeCosts writes the response's costs as io.envoy.ai_gateway dynamic
// metadata the way Envoy AI Gateway does, once, at the end of a successful
// response: each configured cost under its key, then model_name_override
// (the model sent upstream), backend_name (the pool or backend), the
// response_model the server reported and, for streams, the latency keys
// in milliseconds. Values are protobuf numbers (or strings). An Envoy
// Gateway token rate limit (cost.response.from: Metadata) and access logs
// read them after the stream ends.
func (f *filter) writeCosts(r *response, res *usage.Result, lat latency) {
	md := f.callbacks.StreamInfo().DynamicMetadata()
	u := &res.Usage
	vars := cost.Vars{
		Model: r.servedModel, Backend: r.backend,
		Input: u.Input, CachedInput: u.CachedInput, CacheCreationInput: u.CacheCreationInput,
		Output: u.Output, Total: u.Total, Reasoning: u.Reasoning,
	}
	for i := range r.costs {
		c := &r.costs[i]
		v, err := c.Eval(&vars)
		if err != nil {
			// A rate limit must not be charged a made-up number: the key is
			// left out (its descriptor then does not apply).
			inc(f.cfg.metrics.costErrors)
			api.LogDebugf("inflow: cost %s: %v", c.Key, err)
			continue
		}
		md.Set(protocol.MetadataNamespaceAIGateway, c.Key, float64(v))
	}
	md.Set(protocol.MetadataNamespaceAIGateway, protocol.MetadataKeyModelNameOverride, r.servedModel)
	md.Set(protocol.MetadataNamespaceAIGateway, protocol.MetadataKeyBackendName, r.backend)
	if res.Model != "" {
		md.Set(protocol.MetadataNamespaceAIGateway, protocol.MetadataKeyResponseModel, res.Model)
	}
	if lat.hasTTFT {
		md.Set(protocol.MetadataNamespaceAIGateway, protocol.MetadataKeyTokenLatencyTTFT, ms(lat.ttft))
		md.Set(protocol.MetadataNamespaceAIGateway, protocol.MetadataKeyTokenLatencyITL, ms(lat.itl))
	}
}
