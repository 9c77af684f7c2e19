package envoyfilter

import (
	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/request"
)

// writeEdits makes Envoy's buffer, which holds body, hold body edited. It
// drains the bytes up to the last edit and prepends the edited pieces
// (request.Edits.Pieces) instead of Setting a whole new body: nothing is
// allocated in Go, and Envoy copies only the prepended bytes (its buffer
// adds slices in front), where a rewritten body would cost a body-sized
// allocation here and a body-sized copy there. A model rewrite near the
// start of a large body then costs a few dozen bytes, not two copies.
func writeEdits(buf api.BufferInstance, body []byte, edits *request.Edits) error {
	buf.Drain(edits.End())
	return edits.Pieces(body, buf.Prepend)
}
