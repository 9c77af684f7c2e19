package envoyfilter

import "github.com/inflow-gateway/inflow/filter/protocol"

// The keys the filter reads and writes live in filter/protocol.
const (
	HeaderModel            = protocol.HeaderModel
	HeaderDestination      = protocol.HeaderDestination
	MetadataNamespaceLB    = protocol.MetadataNamespaceLB
	MetadataKeyDestination = protocol.MetadataKeyDestination

	headerContentLength = "content-length"
	headerContentType   = "content-type"
	contentTypeJSON     = "application/json"
	pathModels          = "/v1/models"
)
