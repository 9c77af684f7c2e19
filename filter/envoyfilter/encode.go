package envoyfilter

import (
	"net/http"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
)

// detailsViaUpstream is Envoy's response code details for a response that
// came from the upstream rather than from Envoy itself.
const detailsViaUpstream = "via_upstream"

// EncodeHeaders counts the error replies Envoy itself sent to an inference
// request: local replies pass through every encoder filter, this one
// included, so the filter sees Envoy's 413 (the body outgrew the buffer
// limit before the filter saw it), 503 (no healthy upstream, connect
// failure), 504 (timeout) and the like. The filter's own replies were
// counted when sent, and model servers' answers are theirs.
func (f *filter) EncodeHeaders(h api.ResponseHeaderMap, _ bool) (status api.StatusType) {
	defer f.recoverEncodePanic(&status)
	if f.kind == 0 || f.repliedLocally {
		return api.Continue
	}
	code, ok := h.Status()
	if !ok || code < http.StatusBadRequest {
		return api.Continue
	}
	if details, ok := f.callbacks.StreamInfo().ResponseCodeDetails(); ok && details != detailsViaUpstream {
		f.cfg.metrics.countEnvoyReply(code)
	}
	return api.Continue
}

// recoverEncodePanic keeps a panic on the response path from reaching
// Envoy: counting is not worth a stream.
func (f *filter) recoverEncodePanic(status *api.StatusType) {
	if r := recover(); r != nil {
		api.LogErrorf("inflow: panic while counting a response: %v", r)
		*status = api.Continue
	}
}
