package envoyfilter

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

var testLog = &fakeLog{}

func init() { api.SetCommonCAPI(testLog) }

const testConfig = `{
  "models": [
    {"name": "llama", "pool": "gpu", "rewrite": [{"model": "meta-llama/Llama-3.1-8B-Instruct"}]},
    {"name": "sql", "pool": "gpu", "rewrite": [{"model": "sql-lora-a", "weight": 1}, {"model": "sql-lora-b", "weight": 0}]},
    {"name": "plain", "pool": "gpu"},
    {"name": "empty", "pool": "none"},
    {"name": "gpt-4o", "backend": "openai", "owned_by": "openai"}
  ],
  "pools": [
    {"name": "gpu", "endpoints": ["127.0.0.1:9", "127.0.0.2:9"]},
    {"name": "none", "endpoints": []}
  ],
  "backends": [{"name": "openai"}],
  "limits": {"max_request_body_bytes": 4096}
}`

type harness struct {
	t       testing.TB
	cfg     *filterConfig
	metrics *fakeConfigCallbacks
}

func newHarness(t testing.TB, js string) *harness {
	t.Helper()
	c, err := config.Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	a, err := config.ToAny(c)
	if err != nil {
		t.Fatal(err)
	}
	cb := newConfigCallbacks()
	parsed, err := Parser{}.Parse(a, cb)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return &harness{t: t, cfg: parsed.(*filterConfig), metrics: cb}
}

type result struct {
	filter   *filter
	status   api.StatusType
	headers  *fakeHeaders
	body     *fakeBuffer
	cb       *fakeCallbacks
	reply    *localReply
	buffered bool
}

// do runs one request through the decode path as Envoy would.
func (h *harness) do(method, path, body string, headers ...string) result {
	h.t.Helper()
	hdr := newHeaders(method, path, headers...)
	return h.doWith(hdr, body)
}

func (h *harness) doWith(hdr *fakeHeaders, body string) result {
	h.t.Helper()
	cb := newCallbacks()
	f := Factory(h.cfg, cb).(*filter)
	r := result{filter: f, headers: hdr, cb: cb, body: &fakeBuffer{b: []byte(body)}}
	r.status = f.DecodeHeaders(hdr, body == "")
	if r.status == api.StopAndBuffer {
		r.buffered = true
		r.status = f.DecodeData(r.body, true)
	}
	if n := len(cb.decoder.replies); n > 0 {
		if n > 1 {
			h.t.Fatalf("%d local replies", n)
		}
		r.reply = &cb.decoder.replies[0]
	}
	return r
}

// endpoints are the pool endpoints of the named model.
func (h *harness) endpoints(model string) []*pool.Endpoint {
	h.t.Helper()
	m, err := h.cfg.router.Lookup([]byte(model))
	if err != nil {
		h.t.Fatal(err)
	}
	if m.Scheduler == nil {
		h.t.Fatalf("model %s is not served by a pool", model)
	}
	return m.Scheduler.Pool().Endpoints
}

func (r result) endpoint() string { return r.headers.m[protocol.HeaderDestination] }

func TestRoutesInferenceRequest(t *testing.T) {
	h := newHarness(t, testConfig)
	body := `{"messages":[{"role":"user","content":"hi","model":"nested"}],"model":"llama","stream":true}`
	r := h.do("POST", "/v1/chat/completions", body, "content-length", strconv.Itoa(len(body)))
	defer r.filter.OnDestroy(api.Normal)
	if r.status != api.Continue || r.reply != nil || !r.buffered {
		t.Fatalf("status %v reply %+v buffered %v", r.status, r.reply, r.buffered)
	}
	if got := r.headers.m[protocol.HeaderModel]; got != "llama" {
		t.Errorf("%s = %q, want the client-facing model", protocol.HeaderModel, got)
	}
	ep := r.endpoint()
	if ep != "127.0.0.1:9" && ep != "127.0.0.2:9" {
		t.Errorf("%s = %q", protocol.HeaderDestination, ep)
	}
	// Metadata: the primary first, then the other endpoint as fallback.
	other := map[string]string{"127.0.0.1:9": "127.0.0.2:9", "127.0.0.2:9": "127.0.0.1:9"}[ep]
	if md := r.cb.info.md.m[protocol.MetadataNamespaceLB][protocol.MetadataKeyDestination]; md != ep+","+other {
		t.Errorf("metadata %s/%s = %v, want %q", protocol.MetadataNamespaceLB, protocol.MetadataKeyDestination, md, ep+","+other)
	}
	if r.cb.routeClears != 1 {
		t.Errorf("route cache cleared %d times, want 1", r.cb.routeClears)
	}
	var sent map[string]any
	if err := json.Unmarshal(r.body.b, &sent); err != nil {
		t.Fatal(err)
	}
	if sent["model"] != "meta-llama/Llama-3.1-8B-Instruct" || sent["stream"] != true {
		t.Errorf("upstream body = %s", r.body.b)
	}
	if cl := r.headers.m["content-length"]; cl != strconv.Itoa(len(r.body.b)) {
		t.Errorf("content-length = %s, body is %d bytes", cl, len(r.body.b))
	}
	if got := h.metrics.counters[protocol.StatModelRewrites].v.Load(); got != 1 {
		t.Errorf("rewrites counter = %d", got)
	}
}

func TestWeightedRewriteSkipsZeroWeight(t *testing.T) {
	h := newHarness(t, testConfig)
	for range 20 {
		r := h.do("POST", "/v1/completions", `{"model":"sql","prompt":"SELECT"}`)
		if !strings.Contains(string(r.body.b), `"sql-lora-a"`) {
			t.Fatalf("body %s not rewritten to the only weighted target", r.body.b)
		}
		r.filter.OnDestroy(api.Normal)
	}
}

func TestNoRewriteKeepsBodyAndLength(t *testing.T) {
	h := newHarness(t, testConfig)
	body := `{"model":"plain","input":"x"}`
	r := h.do("POST", "/v1/embeddings", body, "content-length", "29")
	defer r.filter.OnDestroy(api.Normal)
	if string(r.body.b) != body || r.headers.m["content-length"] != "29" || r.status != api.Continue {
		t.Fatalf("body %s length %s status %v", r.body.b, r.headers.m["content-length"], r.status)
	}
}

func TestExternalBackendGetsNoEndpoint(t *testing.T) {
	h := newHarness(t, testConfig)
	r := h.do("POST", "/v1/responses", `{"model":"gpt-4o","input":"x"}`, protocol.HeaderDestination, "6.6.6.6:80")
	if r.status != api.Continue || r.headers.m[protocol.HeaderModel] != "gpt-4o" {
		t.Fatalf("status %v headers %v", r.status, r.headers.m)
	}
	if _, ok := r.headers.m[protocol.HeaderDestination]; ok {
		t.Error("client-supplied destination header must be removed")
	}
}

func TestErrors(t *testing.T) {
	h := newHarness(t, testConfig)
	big := `{"model":"llama","prompt":"` + strings.Repeat("a", 5000) + `"}`
	tests := []struct {
		name, path, body string
		headers          []string
		status           int
		code             string
		counter          string
	}{
		{"invalid JSON", "/v1/chat/completions", `{"model":"llama",`, nil, 400, "invalid_json", protocol.StatRejected400},
		{"not an object", "/v1/chat/completions", `["llama"]`, nil, 400, "invalid_request_body", protocol.StatRejected400},
		{"missing model", "/v1/chat/completions", `{"messages":[]}`, nil, 400, "missing_model", protocol.StatRejected400},
		{"model not a string", "/v1/chat/completions", `{"model":7}`, nil, 400, "invalid_type", protocol.StatRejected400},
		{"no body", "/v1/chat/completions", ``, nil, 400, "missing_body", protocol.StatRejected400},
		{"unknown model", "/v1/completions", `{"model":"nope","prompt":"x"}`, nil, 404, "model_not_found", protocol.StatRejected404},
		{"model is case-sensitive", "/v1/completions", `{"model":"LLAMA","prompt":"x"}`, nil, 404, "model_not_found", protocol.StatRejected404},
		{"too large by content-length", "/v1/completions", big, []string{"content-length", strconv.Itoa(len(big))}, 413, "request_too_large", protocol.StatRejected413},
		{"too large chunked", "/v1/completions", big, nil, 413, "request_too_large", protocol.StatRejected413},
		{"pool without endpoints", "/v1/messages", `{"model":"empty","messages":[]}`, nil, 503, "no_healthy_upstream", protocol.StatRejected503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.metrics.counters[tt.counter].v.Load()
			r := h.do("POST", tt.path, tt.body, tt.headers...)
			if r.status != api.LocalReply || r.reply == nil {
				t.Fatalf("status %v, no local reply", r.status)
			}
			checkOpenAIError(t, r.reply, tt.status, tt.code)
			if got := h.metrics.counters[tt.counter].v.Load(); got != before+1 {
				t.Errorf("%s = %d, want %d", tt.counter, got, before+1)
			}
			if _, ok := r.headers.m[protocol.HeaderDestination]; ok {
				t.Error("a rejected request must not carry a destination")
			}
		})
	}
}

func checkOpenAIError(t *testing.T, reply *localReply, status int, code string) {
	t.Helper()
	if reply.status != status {
		t.Fatalf("status %d, want %d (body %s)", reply.status, status, reply.body)
	}
	if ct := reply.headers["content-type"]; len(ct) != 1 || ct[0] != "application/json" {
		t.Errorf("content-type %v", ct)
	}
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    string  `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(reply.body), &e); err != nil {
		t.Fatalf("error body %q: %v", reply.body, err)
	}
	if e.Error.Code != code || e.Error.Message == "" || e.Error.Type == "" {
		t.Errorf("error body %s, want code %q", reply.body, code)
	}
}

func TestModelsList(t *testing.T) {
	h := newHarness(t, testConfig)
	r := h.do("GET", "/v1/models?limit=5", "")
	if r.status != api.LocalReply || r.reply == nil || r.reply.status != http.StatusOK {
		t.Fatalf("status %v reply %+v", r.status, r.reply)
	}
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Created int64  `json:"created"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(r.reply.body), &list); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.Created == 0 || m.OwnedBy == "" {
			t.Errorf("model entry %+v", m)
		}
	}
	if list.Object != "list" || strings.Join(ids, ",") != "empty,gpt-4o,llama,plain,sql" {
		t.Errorf("list %s", r.reply.body)
	}
}

func TestOtherPathsPassThroughWithoutRoutingHeaders(t *testing.T) {
	h := newHarness(t, testConfig)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/healthz"}, {"POST", "/v1/audio/speech"}, {"GET", "/v1/chat"}, {"POST", "/v1/modelsx"},
	} {
		r := h.do(tc.method, tc.path, "", protocol.HeaderModel, "llama", protocol.HeaderDestination, "169.254.169.254:80", protocol.HeaderBackend, "openai")
		if r.status != api.Continue || r.buffered || r.reply != nil {
			t.Errorf("%s %s: status %v buffered %v", tc.method, tc.path, r.status, r.buffered)
		}
		if len(r.headers.m) != 2 {
			t.Errorf("%s %s: routing headers not stripped: %v", tc.method, tc.path, r.headers.m)
		}
		if r.cb.routeClears != 1 {
			t.Errorf("%s %s: route cache must be cleared after stripping", tc.method, tc.path)
		}
	}
}

// Client-sent routing headers go in DecodeHeaders on inference requests
// too: the request might never reach DecodeData (trailers, no body), and
// the route was chosen with them, so it is cleared.
func TestInferenceRequestLosesClientRoutingHeadersInDecodeHeaders(t *testing.T) {
	h := newHarness(t, testConfig)
	hdr := newHeaders("POST", "/v1/chat/completions", protocol.HeaderModel, "plain", protocol.HeaderDestination, "169.254.169.254:80", protocol.HeaderBackend, "openai")
	f := Factory(h.cfg, newCallbacks()).(*filter)
	defer f.OnDestroy(api.Normal)
	if st := f.DecodeHeaders(hdr, false); st != api.StopAndBuffer {
		t.Fatalf("status %v, want StopAndBuffer", st)
	}
	for _, k := range []string{protocol.HeaderModel, protocol.HeaderDestination, protocol.HeaderBackend} {
		if v, ok := hdr.Get(k); ok {
			t.Errorf("%s = %q still there after DecodeHeaders", k, v)
		}
	}
	if n := f.callbacks.(*fakeCallbacks).routeClears; n != 1 {
		t.Errorf("route cache cleared %d times, want 1", n)
	}
}

// Headers then trailers, no body: a buffered inference request never sees
// DecodeData, so DecodeTrailers answers it with the OpenAI 400.
func TestInferenceRequestWithTrailersAndNoBodyIs400(t *testing.T) {
	h := newHarness(t, testConfig)
	cb := newCallbacks()
	f := Factory(h.cfg, cb).(*filter)
	defer f.OnDestroy(api.Normal)
	if st := f.DecodeHeaders(newHeaders("POST", "/v1/chat/completions"), false); st != api.StopAndBuffer {
		t.Fatalf("headers: status %v", st)
	}
	if st := f.DecodeTrailers(nil); st != api.LocalReply {
		t.Fatalf("trailers: status %v, want LocalReply", st)
	}
	if len(cb.decoder.replies) != 1 || cb.decoder.replies[0].status != http.StatusBadRequest {
		t.Fatalf("replies %+v, want one 400", cb.decoder.replies)
	}
	var e struct {
		Error struct{ Message, Type string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(cb.decoder.replies[0].body), &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Errorf("body %q is not an OpenAI error", cb.decoder.replies[0].body)
	}
	if v := h.metrics.value("inflow_rejected_400_total"); v != 1 {
		t.Errorf("inflow_rejected_400_total = %d", v)
	}
	// a request whose body came first is done by then: trailers pass
	g := Factory(h.cfg, newCallbacks()).(*filter)
	if st := g.DecodeTrailers(nil); st != api.Continue {
		t.Errorf("trailers of a pass-through request: %v", st)
	}
}

func TestLeastInFlightAndRelease(t *testing.T) {
	h := newHarness(t, testConfig)
	body := `{"model":"plain","prompt":"x"}`
	first := h.do("POST", "/v1/completions", body)
	second := h.do("POST", "/v1/completions", body)
	if first.endpoint() == second.endpoint() {
		t.Fatalf("both requests went to %s while the other endpoint was idle", first.endpoint())
	}
	gauge := h.metrics.gauges[protocol.StatInFlight]
	if gauge.v.Load() != 2 {
		t.Fatalf("in-flight gauge = %d, want 2", gauge.v.Load())
	}
	// The first stream ends (reset, say): its endpoint is now the least loaded.
	first.filter.OnDestroy(api.Terminate)
	first.filter.OnDestroy(api.Normal) // a second call must not double-release
	third := h.do("POST", "/v1/completions", body)
	if third.endpoint() != first.endpoint() {
		t.Fatalf("third request went to %s, want the idle %s", third.endpoint(), first.endpoint())
	}
	second.filter.OnDestroy(api.Normal)
	third.filter.OnDestroy(api.Normal)
	if gauge.v.Load() != 0 {
		t.Fatalf("in-flight gauge = %d after all streams ended", gauge.v.Load())
	}
	for _, ep := range h.endpoints("plain") {
		if ep.InFlight() != 0 {
			t.Errorf("%s in flight = %d", ep.Addr, ep.InFlight())
		}
	}
}

func TestPanicBecomes500AndReleases(t *testing.T) {
	h := newHarness(t, testConfig)
	hdr := newHeaders("POST", "/v1/completions")
	hdr.panicOnSet = true
	r := h.doWith(hdr, `{"model":"plain","prompt":"x"}`)
	if r.status != api.LocalReply || r.reply == nil {
		t.Fatalf("status %v, want a local reply", r.status)
	}
	checkOpenAIError(t, r.reply, 500, "internal_error")
	for _, ep := range h.endpoints("plain") {
		if ep.InFlight() != 0 {
			t.Errorf("%s still has %d in flight after the panic", ep.Addr, ep.InFlight())
		}
	}
	if !strings.Contains(testLog.text(), "panic") {
		t.Error("the panic must be logged")
	}
}

func TestRequestBodiesAreNotLogged(t *testing.T) {
	h := newHarness(t, testConfig)
	secret := "my-secret-prompt-7f3a"
	for _, body := range []string{
		`{"model":"plain","prompt":"` + secret + `"}`,
		`{"model":"plain","prompt":"` + secret + `",}`,
		`{"model":"nope","prompt":"` + secret + `"}`,
	} {
		r := h.do("POST", "/v1/completions", body)
		r.filter.OnDestroy(api.Normal)
		if r.reply != nil && strings.Contains(r.reply.body, secret) {
			t.Errorf("error reply quotes the prompt: %s", r.reply.body)
		}
	}
	if strings.Contains(testLog.text(), secret) {
		t.Error("a prompt reached the log")
	}
}

func TestParseRejectsInvalidConfigNamingTheField(t *testing.T) {
	for _, tc := range []struct{ js, field string }{
		{`{"models":[{"name":"m","pool":"missing"}]}`, "models[0].pool"},
		{`{"models":[{"name":"m","pool":"p"}],"pools":[{"name":"p","endpoints":["nohost"]}]}`, "pools[0].endpoints[0]"},
		{`{"models":[{"name":"m","pool":"p","extra":1}],"pools":[{"name":"p","endpoints":[]}]}`, `unknown field "extra"`},
		{`{"models":[{"name":"m","backend":"b"}],"backends":[{"name":"b"}],"limits":{"max_request_body_bytes":-1}}`, "limits.max_request_body_bytes"},
	} {
		s, err := toStruct(tc.js)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parser{}.Parse(s, newConfigCallbacks())
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("config %s: error %v, want it to name %s", tc.js, err, tc.field)
		}
	}
}
