package envoyfilter

import "github.com/inflow-gateway/inflow/filter/decide"

// HTTP names the filter uses; the keys Inflow shares with Envoy and the
// gateway (routing headers, metadata, stat names) are in filter/protocol.
// The request-side names are decide's, which the ext_proc adapter shares.
const (
	headerContentLength   = decide.HeaderContentLength
	headerContentType     = decide.HeaderContentType
	headerContentEncoding = "content-encoding"
	headerAcceptEncoding  = "accept-encoding"
	contentTypeJSON       = decide.ContentTypeJSON
	contentTypeSSE        = "text/event-stream"
)
