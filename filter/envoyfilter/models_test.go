package envoyfilter

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/protocol"
)

// GET /v1/models/{id} is OpenAI's retrieve-model call: the model object,
// or 404 model_not_found; ids with a slash arrive escaped or not.
func TestRetrieveModel(t *testing.T) {
	h := newHarness(t, `{
	  "models": [
	    {"name": "llama", "pool": "gpu", "owned_by": "meta"},
	    {"name": "meta-llama/Llama-3.1-8B-Instruct", "pool": "gpu"}
	  ],
	  "pools": [{"name": "gpu", "endpoints": ["127.0.0.1:9"]}]
	}`)
	tests := []struct {
		method, path string
		id, owner    string // want this object; "" wants a 404
	}{
		{"GET", "/v1/models/llama", "llama", "meta"},
		{"HEAD", "/v1/models/llama", "llama", "meta"},
		{"GET", "/v1/models/llama?x=1", "llama", "meta"},
		{"GET", "/v1/models/meta-llama%2FLlama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct", "inflow"},
		{"GET", "/v1/models/meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct", "inflow"},
		{"GET", "/v1/models/LLAMA", "", ""},
		{"GET", "/v1/models/nope", "", ""},
		{"GET", "/v1/models/%zz", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			before := h.metrics.value(protocol.StatRejected404)
			r := h.do(tt.method, tt.path, "")
			if r.status != api.LocalReply || r.reply == nil {
				t.Fatalf("status %v, no local reply", r.status)
			}
			if tt.id == "" {
				checkOpenAIError(t, r.reply, http.StatusNotFound, "model_not_found")
				if got := h.metrics.value(protocol.StatRejected404); got != before+1 {
					t.Errorf("404 counter %d, want %d", got, before+1)
				}
				return
			}
			var m struct {
				ID      string `json:"id"`
				Object  string `json:"object"`
				Created int64  `json:"created"`
				OwnedBy string `json:"owned_by"`
			}
			if r.reply.status != http.StatusOK {
				t.Fatalf("status %d body %s", r.reply.status, r.reply.body)
			}
			if err := json.Unmarshal([]byte(r.reply.body), &m); err != nil {
				t.Fatal(err)
			}
			if m.ID != tt.id || m.Object != "model" || m.Created == 0 || m.OwnedBy != tt.owner {
				t.Errorf("model %s, want id %q owned by %q", r.reply.body, tt.id, tt.owner)
			}
		})
	}
}

// A method a path does not take is a 405 naming the allowed ones, counted
// like every other rejection.
func TestWrongMethodIs405WithAllow(t *testing.T) {
	h := newHarness(t, testConfig)
	tests := []struct{ method, path, allow string }{
		{"GET", "/v1/chat/completions", "POST"},
		{"PUT", "/v1/completions?stream=true", "POST"},
		{"DELETE", "/v1/embeddings", "POST"},
		{"GET", "/v1/responses", "POST"},
		{"OPTIONS", "/v1/messages", "POST"},
		{"POST", "/v1/models", "GET, HEAD"},
		{"DELETE", "/v1/models/llama", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			before := h.metrics.value(protocol.StatRejected405)
			r := h.do(tt.method, tt.path, "", protocol.HeaderDestination, "6.6.6.6:80")
			if r.status != api.LocalReply || r.reply == nil || r.buffered {
				t.Fatalf("status %v buffered %v, want a local reply", r.status, r.buffered)
			}
			checkOpenAIError(t, r.reply, http.StatusMethodNotAllowed, "method_not_allowed")
			if got := r.reply.headers["allow"]; len(got) != 1 || got[0] != tt.allow {
				t.Errorf("allow %v, want %q", got, tt.allow)
			}
			if got := h.metrics.value(protocol.StatRejected405); got != before+1 {
				t.Errorf("405 counter %d, want %d", got, before+1)
			}
		})
	}
}

// Every local reply of the filter carries the marker the HCM's first
// local_reply_config mapper matches, so Envoy does not re-wrap it.
func TestOwnRepliesAreMarkedForLocalReplyConfig(t *testing.T) {
	h := newHarness(t, testConfig)
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/models", ""},
		{"GET", "/v1/models/nope", ""},
		{"GET", "/v1/chat/completions", ""},
		{"POST", "/v1/chat/completions", `{"model":"nope","messages":[]}`},
		{"POST", "/v1/chat/completions", `{`},
	} {
		r := h.do(tc.method, tc.path, tc.body)
		if r.reply == nil {
			t.Fatalf("%s %s: no local reply", tc.method, tc.path)
		}
		if v := r.cb.info.md.m[protocol.MetadataNamespaceInflow][protocol.MetadataKeyOpenAIReply]; v != true {
			t.Errorf("%s %s: marker %v, want true", tc.method, tc.path, v)
		}
	}
	r := h.do("POST", "/v1/completions", `{"model":"plain","prompt":"x"}`)
	defer r.filter.OnDestroy(api.Normal)
	if _, ok := r.cb.info.md.m[protocol.MetadataNamespaceInflow]; ok || !strings.Contains(r.endpoint(), ":9") {
		t.Error("a routed request must not carry the local-reply marker")
	}
}
