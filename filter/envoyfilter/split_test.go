package envoyfilter

import (
	"encoding/json"
	"testing"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/split"
)

// splitConfig splits "gpt" across two backends, with a fallback. The
// backend names are the test's own: the process-wide health registry is
// shared with every other test.
const splitConfig = `{
  "models": [{"name": "gpt", "backend": "split-a", "backend_refs": [
    {"backend": "split-a"}, {"backend": "split-b", "model": "gpt-b"}, {"backend": "split-fallback", "model": "gpt-f", "priority": 1}]}],
  "backends": [{"name": "split-a"}, {"name": "split-b"}, {"name": "split-fallback"}]
}`

// sendGPT routes one chat request for gpt, answers it with status and
// returns the backend the filter named and the model the body says.
func sendGPT(t *testing.T, h *harness, status int) (backend, model string) {
	t.Helper()
	r := h.do("POST", "/v1/chat/completions", `{"model":"gpt","messages":[{"role":"user","content":"hi"}]}`,
		protocol.HeaderBackend, "split-fallback") // a client's choice is dropped
	defer r.filter.OnDestroy(api.Normal)
	if r.status != api.Continue {
		t.Fatalf("status %v, reply %+v", r.status, r.reply)
	}
	r.cb.info.details = "via_upstream"
	r.filter.EncodeHeaders(&fakeResponseHeaders{status: status}, true)
	return r.headers.m[protocol.HeaderBackend], modelOfBody(t, r.body.b)
}

func modelOfBody(t *testing.T, body []byte) string {
	t.Helper()
	var v struct{ Model string }
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	return v.Model
}

// TestSplitNamesTheBackendAndFallsBack: each request names one backend of
// the first priority, with that backend's model name; a backend answering
// 5xx in a row is ejected (counted) and the next request goes elsewhere;
// with both ejected the fallback serves.
func TestSplitNamesTheBackendAndFallsBack(t *testing.T) {
	h := newHarness(t, splitConfig)
	seen := map[string]bool{}
	for range 200 {
		backend, model := sendGPT(t, h, 200)
		if want := map[string]string{"split-a": "gpt", "split-b": "gpt-b"}[backend]; model != want {
			t.Fatalf("to %q the body says %q, want %q", backend, model, want)
		}
		seen[backend] = true
	}
	if !seen["split-a"] || !seen["split-b"] {
		t.Fatalf("200 requests went to %v, want both backends of priority 0", seen)
	}
	ejected := func() int64 { return h.metrics.value(protocol.StatBackendEjections) }
	for _, failing := range []string{"split-a", "split-b"} {
		before := ejected()
		// the failing backend's run of 5xx; the other's successes in
		// between do not break it
		for n := 0; n < split.Consecutive5xx; {
			r := h.do("POST", "/v1/chat/completions", `{"model":"gpt","messages":[]}`)
			backend := r.headers.m[protocol.HeaderBackend]
			status := 200
			if backend == failing {
				status, n = 502, n+1
			}
			r.cb.info.details = "via_upstream"
			r.filter.EncodeHeaders(&fakeResponseHeaders{status: status}, true)
			r.filter.OnDestroy(api.Normal)
		}
		if got := ejected() - before; got != 1 {
			t.Fatalf("%s: %d ejections after %d consecutive 5xx, want 1", failing, got, split.Consecutive5xx)
		}
		for range 50 {
			if backend, _ := sendGPT(t, h, 200); backend == failing {
				t.Fatalf("a request went to the ejected %s", failing)
			}
		}
	}
	for range 20 {
		if backend, model := sendGPT(t, h, 200); backend != "split-fallback" || model != "gpt-f" {
			t.Fatalf("with priority 0 ejected: to %q as %q, want split-fallback as gpt-f", backend, model)
		}
	}
}
