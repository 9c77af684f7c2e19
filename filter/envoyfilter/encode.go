package envoyfilter

import (
	"net/http"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
)

// detailsViaUpstream is Envoy's response code details for a response that
// came from the upstream rather than from Envoy itself.
const detailsViaUpstream = "via_upstream"

// countEnvoyReply counts the error replies Envoy itself sent to an
// inference request: local replies pass through every encoder filter, this
// one included, so the filter sees Envoy's 413 (the body outgrew the buffer
// limit before the filter saw it), 503 (no healthy upstream, connect
// failure), 504 (timeout) and the like. The filter's own replies were
// counted when sent, and model servers' answers are theirs.
func (f *filter) countEnvoyReply(h api.ResponseHeaderMap) {
	if f.kind == 0 || f.repliedLocally {
		return
	}
	code, ok := h.Status()
	if !ok || code < http.StatusBadRequest {
		return
	}
	if details, ok := f.callbacks.StreamInfo().ResponseCodeDetails(); ok && details != detailsViaUpstream {
		f.cfg.metrics.countEnvoyReply(code)
	}
}
