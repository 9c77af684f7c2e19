package envoyfilter

// HTTP names the filter uses; the keys Inflow shares with Envoy and the
// gateway (routing headers, metadata, stat names) are in filter/protocol.
const (
	headerContentLength   = "content-length"
	headerContentType     = "content-type"
	headerContentEncoding = "content-encoding"
	headerAcceptEncoding  = "accept-encoding"
	contentTypeJSON       = "application/json"
	contentTypeSSE        = "text/event-stream"
	pathModels            = "/v1/models"
)
