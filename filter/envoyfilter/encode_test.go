package envoyfilter

import (
	"strings"
	"testing"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// Envoy's own error replies to inference requests reach the filter's
// encode path and are counted there; the filter's replies and the model
// servers' answers are not counted twice.
func TestEnvoyRepliesAreCounted(t *testing.T) {
	h := newHarness(t, testConfig)
	const body = `{"model":"plain","prompt":"x"}`
	tests := []struct {
		name         string
		send         func() result // the decode path as Envoy drives it
		status       int
		details      string
		want413      int64
		want4, want5 int64
	}{
		{
			name: "Envoy's 413 while buffering",
			send: func() result {
				// Envoy answers before the body completes: DecodeData never runs.
				cb := newCallbacks()
				f := Factory(h.cfg, cb).(*filter)
				hdr := newHeaders("POST", "/v1/completions")
				if s := f.DecodeHeaders(hdr, false); s != api.StopAndBuffer {
					t.Fatalf("DecodeHeaders %v", s)
				}
				return result{filter: f, cb: cb, headers: hdr}
			},
			status: 413, details: "request_payload_too_large", want413: 1, want4: 1,
		},
		{
			name:   "no healthy upstream after routing",
			send:   func() result { return h.do("POST", "/v1/completions", body) },
			status: 503, details: "no_healthy_upstream", want5: 1,
		},
		{
			name:   "connect failure after routing",
			send:   func() result { return h.do("POST", "/v1/completions", body) },
			status: 503, details: "upstream_reset_before_response_started{remote_connection_failure}", want5: 1,
		},
		{
			name:   "timeout",
			send:   func() result { return h.do("POST", "/v1/completions", body) },
			status: 504, details: "upstream_response_timeout", want5: 1,
		},
		{
			name:   "a model server's 503",
			send:   func() result { return h.do("POST", "/v1/completions", body) },
			status: 503, details: "via_upstream",
		},
		{
			name:   "a model server's 200",
			send:   func() result { return h.do("POST", "/v1/completions", body) },
			status: 200, details: "via_upstream",
		},
		{
			name:   "the filter's own 404",
			send:   func() result { return h.do("POST", "/v1/completions", `{"model":"nope"}`) },
			status: 404, details: "inflow",
		},
		{
			name:   "not an inference request",
			send:   func() result { return h.do("GET", "/healthz", "") },
			status: 404, details: "route_not_found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b413 := h.metrics.value(protocol.StatRejected413)
			b4, b5 := h.metrics.value(protocol.StatEnvoyReplies4xx), h.metrics.value(protocol.StatEnvoyReplies5xx)
			r := tt.send()
			defer r.filter.OnDestroy(api.Normal)
			r.cb.info.details = tt.details
			if s := r.filter.EncodeHeaders(&fakeResponseHeaders{status: tt.status}, true); s != api.Continue {
				t.Fatalf("EncodeHeaders %v", s)
			}
			if got := h.metrics.value(protocol.StatRejected413) - b413; got != tt.want413 {
				t.Errorf("413 counter +%d, want +%d", got, tt.want413)
			}
			if got := h.metrics.value(protocol.StatEnvoyReplies4xx) - b4; got != tt.want4 {
				t.Errorf("Envoy 4xx counter +%d, want +%d", got, tt.want4)
			}
			if got := h.metrics.value(protocol.StatEnvoyReplies5xx) - b5; got != tt.want5 {
				t.Errorf("Envoy 5xx counter +%d, want +%d", got, tt.want5)
			}
		})
	}
}

func TestEncodePanicDoesNotEscape(t *testing.T) {
	h := newHarness(t, testConfig)
	r := h.do("POST", "/v1/completions", `{"model":"plain","prompt":"x"}`)
	defer r.filter.OnDestroy(api.Normal)
	// The embedded nil interface panics on Status().
	var broken struct{ api.ResponseHeaderMap }
	if s := r.filter.EncodeHeaders(&broken, true); s != api.Continue {
		t.Fatalf("status %v", s)
	}
	if !strings.Contains(testLog.text(), "panic on the response path") {
		t.Error("the panic must be logged")
	}
}
