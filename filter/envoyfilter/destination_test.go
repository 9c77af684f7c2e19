package envoyfilter

import (
	"slices"
	"strings"
	"testing"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// destinationConfig has one pool per destination mode, three endpoints
// each, so a pick has a primary and two fallbacks.
const destinationConfig = `{
  "models": [
    {"name": "oh", "pool": "oh"},
    {"name": "od", "pool": "od"},
    {"name": "default", "pool": "unset"},
    {"name": "ext", "backend": "openai"}
  ],
  "pools": [
    {"name": "oh", "destination": "override_host", "endpoints": ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"]},
    {"name": "od", "destination": "original_dst", "endpoints": ["10.0.1.1:8000", "10.0.1.2:8000", "10.0.1.3:8000"]},
    {"name": "unset", "endpoints": ["10.0.2.1:8000", "10.0.2.2:8000"]}
  ],
  "backends": [{"name": "openai"}]
}`

var poolEndpoints = map[string][]string{
	"oh":      {"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"},
	"od":      {"10.0.1.1:8000", "10.0.1.2:8000", "10.0.1.3:8000"},
	"default": {"10.0.2.1:8000", "10.0.2.2:8000"},
}

func (r result) destinationMetadata() (string, bool) {
	v, ok := r.cb.info.md.m[protocol.MetadataNamespaceLB][protocol.MetadataKeyDestination]
	if !ok {
		return "", false
	}
	s, _ := v.(string)
	return s, true
}

// Each mode writes what its cluster reads: OverrideHost gets the ordered
// list (primary first), ORIGINAL_DST the primary alone, and the header is
// the primary in both.
func TestDestinationFormPerMode(t *testing.T) {
	h := newHarness(t, destinationConfig)
	tests := []struct {
		model    string
		wantList int // entries in the metadata
	}{
		{"oh", 3},      // primary + the default 2 fallbacks
		{"od", 1},      // ORIGINAL_DST parses one address only
		{"default", 2}, // override_host by default; the pool has 2 endpoints
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			r := h.do("POST", "/v1/completions", `{"model":"`+tt.model+`","prompt":"x"}`)
			defer r.filter.OnDestroy(api.Normal)
			md, ok := r.destinationMetadata()
			if !ok {
				t.Fatal("no destination metadata")
			}
			list := strings.Split(md, ",")
			if len(list) != tt.wantList {
				t.Fatalf("metadata %q: %d entries, want %d", md, len(list), tt.wantList)
			}
			if r.endpoint() != list[0] {
				t.Errorf("header %q, want the primary %q", r.endpoint(), list[0])
			}
			if len(slices.Compact(slices.Sorted(slices.Values(list)))) != len(list) {
				t.Errorf("metadata %q repeats an endpoint", md)
			}
		})
	}
}

// Whatever a client sends, the only addresses Envoy is told about are the
// requested model's pool endpoints, in either mode; requests that continue
// to the router without a pool pick carry none at all, and requests the
// filter answers itself never reach an upstream.
func TestClientCannotChooseAnAddressOutsideThePool(t *testing.T) {
	h := newHarness(t, destinationConfig)
	const evil = "169.254.169.254:80"
	tests := []struct {
		name, method, path, body string
		pool                     string // "" when no endpoint may be named
	}{
		{"override_host pick", "POST", "/v1/chat/completions", `{"model":"oh","messages":[]}`, "oh"},
		{"original_dst pick", "POST", "/v1/chat/completions", `{"model":"od","messages":[]}`, "od"},
		{"default mode pick", "POST", "/v1/completions", `{"model":"default","prompt":"x"}`, "default"},
		{"external backend", "POST", "/v1/responses", `{"model":"ext","input":"x"}`, ""},
		{"unknown model", "POST", "/v1/completions", `{"model":"nope","prompt":"x"}`, ""},
		{"invalid body", "POST", "/v1/completions", `{"model":"od",`, ""},
		{"not inference", "GET", "/healthz", "", ""},
		{"model list", "GET", "/v1/models", "", ""},
		{"wrong method", "GET", "/v1/chat/completions", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(tt.method, tt.path, tt.body, protocol.HeaderDestination, evil, protocol.HeaderModel, "od")
			defer r.filter.OnDestroy(api.Normal)
			allowed := poolEndpoints[tt.pool]
			hdr, hasHdr := r.headers.m[protocol.HeaderDestination]
			md, hasMD := r.destinationMetadata()
			if r.status == api.LocalReply {
				if tt.pool != "" || hasMD {
					t.Fatalf("answered locally with metadata %q (%v)", md, hasMD)
				}
				return
			}
			if r.status != api.Continue {
				t.Fatalf("status %v", r.status)
			}
			if tt.pool == "" {
				if hasHdr || hasMD {
					t.Fatalf("header %q (%v), metadata %q (%v): want none", hdr, hasHdr, md, hasMD)
				}
				return
			}
			if !slices.Contains(allowed, hdr) {
				t.Errorf("header %q is not an endpoint of pool %s", hdr, tt.pool)
			}
			if !hasMD {
				t.Fatal("no destination metadata")
			}
			for _, a := range strings.Split(md, ",") {
				if !slices.Contains(allowed, a) {
					t.Errorf("metadata names %q, not an endpoint of pool %s", a, tt.pool)
				}
			}
		})
	}
}
