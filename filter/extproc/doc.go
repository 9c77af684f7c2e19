// Package extproc is Inflow's second adapter: an Envoy external processor
// (envoy.service.ext_proc.v3) that speaks the Gateway API Inference
// Extension's endpoint-picker protocol, so a stock Envoy, or an
// InferencePool's endpointPickerRef in Envoy Gateway, can use Inflow
// without the Go filter. It makes exactly the decisions the filter makes
// (filter/decide, filter/router, filter/scheduler) and turns them into
// ext_proc messages instead of filter callbacks.
//
// Per stream it reads the request headers and the whole request body,
// then answers as the endpoint picker does:
//   - FULL_DUPLEX_STREAMED request bodies (the EPP's mode): one headers
//     response after the last body chunk, carrying the header mutations,
//     the envoy.lb dynamic metadata and clear_route_cache, followed by the
//     (possibly rewritten) body as streamed_response chunks.
//   - BUFFERED request bodies: an empty headers response at once, then
//     one body response carrying the header mutations (content-length
//     included when the body changed), the body mutation, the metadata
//     and clear_route_cache.
//   - Rejections (400, 404, 413, 429, 503, 500) as an ImmediateResponse
//     with the OpenAI error body, the same one the filter sends.
//
// Response phases, when the proxy sends them, pass unchanged (streamed
// response bodies are echoed chunk by chunk). The stream holds its
// endpoint's in-flight count until it ends.
package extproc
