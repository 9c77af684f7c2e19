package extproc

import "github.com/inflow-gateway/inflow/filter/config"

// Message limits. Envoy's own ext_proc client receives messages of any size
// by default (envoy_grpc max_receive_message_length 0); gRPC servers and
// the google_grpc client default to 4 MiB.
const (
	// MaxRecvMessageBytes is the largest message the server accepts. It is
	// above anything a valid config lets through (the body limit's ceiling)
	// plus Envoy's largest header block (max_request_headers_kb at its
	// maximum of 8 MiB), so a body is always judged by the config's
	// max_request_body_bytes, with the OpenAI-shaped 413, and never by a
	// gRPC RESOURCE_EXHAUSTED that Envoy would turn into a bare 500.
	MaxRecvMessageBytes = int(config.MaxRequestBodyBytesCeiling) + 8<<20

	// MaxBodyChunkBytes bounds one streamed_response body chunk. Below
	// 64 KiB, a chunk and its framing fit HTTP/2's default 65,535-byte
	// initial stream window, so no message waits half-sent for a window
	// update, and any client's receive limit is met. The Inference
	// Extension's EPP uses the same bound (62,000 bytes).
	MaxBodyChunkBytes = 62000
)
