package envoyfilter

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	dto "github.com/prometheus/client_model/go"

	"github.com/inflow-gateway/inflow/filter/genai"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// responseConfig serves "llama" (rewritten) and "plain" from a pool, with
// the conventional token costs and a CEL one. Each test gets its own pool
// (responseHarness): pools are process-wide, and a test's failures must
// not cool down another test's endpoints.
const responseConfig = `{
  "models": [
    {"name": "llama", "pool": "POOL", "rewrite": [{"model": "llama-3-8b"}],
     "costs": [{"metadata_key": "weighted", "type": "CEL", "cel": "input_tokens + output_tokens * 3u"}]},
    {"name": "plain", "pool": "POOL"},
    {"name": "gpt", "backend": "openai"}
  ],
  "pools": [{"name": "POOL", "endpoints": ["127.0.0.1:9", "127.0.0.2:9"]}],
  "backends": [{"name": "openai"}],
  "costs": [
    {"metadata_key": "llm_input_token", "type": "InputToken"},
    {"metadata_key": "llm_output_token", "type": "OutputToken"},
    {"metadata_key": "llm_total_token", "type": "TotalToken"},
    {"metadata_key": "weighted", "type": "TotalToken"}
  ]
}`

// exchange is one request through the decode path and a response through
// the encode path, as Envoy drives them.
type exchange struct {
	result
	respHeaders *fakeResponseHeaders
	client      []byte // what the client received
}

func (h *harness) exchange(path, body string, reqHeaders []string, status int, respHeaders map[string]string, pieces ...string) *exchange {
	h.t.Helper()
	x := &exchange{result: h.do("POST", path, body, reqHeaders...)}
	if x.reply != nil {
		h.t.Fatalf("local reply %+v", x.reply)
	}
	x.respHeaders = &fakeResponseHeaders{status: status, m: respHeaders}
	f := x.filter
	// No pieces: the body comes later (the test sends it), unless the
	// status has none.
	if st := f.EncodeHeaders(x.respHeaders, len(pieces) == 0 && status >= 300); st != api.Continue {
		h.t.Fatalf("EncodeHeaders: %v", st)
	}
	for i, p := range pieces {
		buf := &fakeBuffer{b: []byte(p)}
		if st := f.EncodeData(buf, i == len(pieces)-1); st != api.Continue {
			h.t.Fatalf("EncodeData: %v", st)
		}
		x.client = append(x.client, buf.b...)
	}
	return x
}

// end runs the end of the stream as Envoy does.
func (x *exchange) end() *exchange {
	x.filter.OnStreamComplete()
	x.filter.OnDestroy(api.Normal)
	return x
}

func (x *exchange) md() map[string]any { return x.cb.info.md.m[protocol.MetadataNamespaceAIGateway] }

var sse = map[string]string{"content-type": "text/event-stream; charset=utf-8"}

func chunk(content string) string {
	return `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"llama-3-8b","choices":[{"index":0,"delta":{"content":"` + content + `"},"finish_reason":null}]}` + "\n\n"
}

const usageChunk = `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"llama-3-8b","choices":[],"usage":{"prompt_tokens":10,"total_tokens":14,"completion_tokens":4}}` + "\n\n"

func TestNonStreamingCostsAsMetadata(t *testing.T) {
	h := responseHarness(t)
	body := `{"model":"llama-3-8b","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}`
	x := h.exchange("/v1/chat/completions", `{"model":"llama","messages":[]}`, nil, 200,
		map[string]string{"content-type": "application/json"}, body[:30], body[30:]).end()
	if string(x.client) != body {
		t.Fatalf("a JSON body passes unchanged, got %q", x.client)
	}
	want := map[string]any{
		protocol.CostKeyInputToken: 7.0, protocol.CostKeyOutputToken: 5.0, protocol.CostKeyTotalToken: 12.0,
		"weighted":                            7.0 + 5*3, // the model's CEL cost wins over the gateway's
		protocol.MetadataKeyModelNameOverride: "llama-3-8b", protocol.MetadataKeyBackendName: "TestNonStreamingCostsAsMetadata",
		protocol.MetadataKeyResponseModel: "llama-3-8b",
	}
	if got := x.md(); !equalMD(got, want) {
		t.Errorf("metadata %v, want %v", got, want)
	}
}

// responseHarness is a harness on responseConfig with a pool of the test's
// own; js, when set, replaces responseConfig.
func responseHarness(t *testing.T, js ...string) *harness {
	cfg := responseConfig
	if len(js) > 0 {
		cfg = js[0]
	}
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return newHarness(t, strings.ReplaceAll(cfg, "POOL", name))
}

func equalMD(got, want map[string]any) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// The filter asks for usage the client did not ask for, and the client
// gets the stream it would have got: every byte but the usage chunk.
func TestStreamUsageAskedAndStripped(t *testing.T) {
	h := responseHarness(t)
	x := h.exchange("/v1/chat/completions", `{"model":"llama","stream":true,"messages":[]}`, nil, 200, sse)
	if !strings.Contains(string(x.body.b), `"stream_options":{"include_usage":true}`) {
		t.Fatalf("upstream body %s does not ask for usage", x.body.b)
	}
	server := chunk("Hel") + chunk("lo") + usageChunk + "data: [DONE]\n\n"
	cut := strings.Index(server, usageChunk) + 25 // a piece ends inside the usage chunk
	for i, p := range []string{server[:10], server[10:cut], server[cut:]} {
		buf := &fakeBuffer{b: []byte(p)}
		x.filter.EncodeData(buf, i == 2)
		x.client = append(x.client, buf.b...)
	}
	x.end()
	if want := chunk("Hel") + chunk("lo") + "data: [DONE]\n\n"; string(x.client) != want {
		t.Fatalf("client got\n%q\nwant\n%q", x.client, want)
	}
	md := x.md()
	if md[protocol.CostKeyTotalToken] != 14.0 || md["weighted"] != 10.0+4*3 {
		t.Errorf("metadata %v", md)
	}
	if _, ok := md[protocol.MetadataKeyTokenLatencyTTFT].(float64); !ok {
		t.Errorf("a stream has %s: %v", protocol.MetadataKeyTokenLatencyTTFT, md)
	}
	if _, ok := md[protocol.MetadataKeyTokenLatencyITL].(float64); !ok {
		t.Errorf("a stream has %s: %v", protocol.MetadataKeyTokenLatencyITL, md)
	}
}

// A client that asked for usage gets the usage chunk; with the setting off
// the request is left alone.
func TestStreamUsageNotStrippedWhenAsked(t *testing.T) {
	h := responseHarness(t)
	server := chunk("a") + usageChunk + "data: [DONE]\n\n"
	x := h.exchange("/v1/chat/completions", `{"model":"plain","stream":true,"stream_options":{"include_usage":true}}`, nil, 200, sse, server).end()
	if string(x.client) != server || x.md()[protocol.CostKeyTotalToken] != 14.0 {
		t.Fatalf("client %q, metadata %v", x.client, x.md())
	}
	off := responseHarness(t, strings.Replace(responseConfig, `"backends": [{"name": "openai"}],`, `"backends": [{"name": "openai"}], "usage": {"request_usage": false},`, 1))
	x = off.exchange("/v1/chat/completions", `{"model":"plain","stream":true}`, nil, 200, sse, chunk("a")+"data: [DONE]\n\n").end()
	if strings.Contains(string(x.body.b), "stream_options") {
		t.Errorf("request_usage off: body %s", x.body.b)
	}
	if _, ok := x.md()[protocol.CostKeyTotalToken]; !ok {
		t.Errorf("costs are still written (0 tokens): %v", x.md())
	}
}

func TestNoMetadataForNon2xx(t *testing.T) {
	h := responseHarness(t)
	x := h.exchange("/v1/chat/completions", `{"model":"plain","messages":[]}`, nil, 400,
		map[string]string{"content-type": "application/json"}, `{"error":{"message":"bad","code":400}}`).end()
	if len(x.md()) != 0 {
		t.Errorf("metadata for a 400: %v", x.md())
	}
	if ep := h.endpoint(x.endpoint()); ep.CoolingDown(time.Now()) {
		t.Error("a 400 is the client's fault, not the endpoint's")
	}
	x = h.exchange("/v1/chat/completions", `{"model":"plain","messages":[]}`, nil, 503, map[string]string{}).end()
	if len(x.md()) != 0 {
		t.Errorf("metadata for a 503: %v", x.md())
	}
	if ep := h.endpoint(x.endpoint()); !ep.CoolingDown(time.Now()) {
		t.Error("a 503 cools the endpoint down")
	}
}

func (h *harness) endpoint(addr string) *pool.Endpoint {
	h.t.Helper()
	for _, s := range h.cfg.router.Schedulers() {
		for _, ep := range s.Pool().Endpoints {
			if ep.Addr == addr {
				return ep
			}
		}
	}
	h.t.Fatalf("no endpoint %s", addr)
	return nil
}

// A stream cut off before its end is recorded with the usage last seen;
// an upstream reset cools the endpoint down, a client leaving does not.
func TestCutOffStream(t *testing.T) {
	h := responseHarness(t)
	continuous := `data: {"model":"llama-3-8b","choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}}` + "\n\n"
	x := h.exchange("/v1/chat/completions", `{"model":"plain","stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}`, nil, 200, sse)
	buf := &fakeBuffer{b: []byte(continuous)}
	x.filter.EncodeData(buf, false)
	x.cb.info.details = "downstream_remote_disconnect"
	x.end()
	if x.md()[protocol.CostKeyTotalToken] != 12.0 {
		t.Errorf("usage last seen is charged: %v", x.md())
	}
	if h.endpoint(x.endpoint()).CoolingDown(time.Now()) {
		t.Error("a client that left is not the endpoint's failure")
	}
	x = h.exchange("/v1/chat/completions", `{"model":"plain","stream":true}`, nil, 200, sse)
	x.filter.EncodeData(&fakeBuffer{b: []byte(chunk("x"))}, false)
	x.cb.info.details = "upstream_reset_after_response_started{remote_reset}"
	x.end()
	if !h.endpoint(x.endpoint()).CoolingDown(time.Now()) {
		t.Error("an upstream reset cools the endpoint down")
	}
}

func TestGzipStreamStrippedAndReencoded(t *testing.T) {
	h := responseHarness(t)
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	var pieces []string
	for _, ev := range []string{chunk("Hel"), chunk("lo"), usageChunk, "data: [DONE]\n\n"} {
		z.Reset()
		_, _ = w.Write([]byte(ev))
		_ = w.Flush()
		pieces = append(pieces, z.String())
	}
	z.Reset()
	_ = w.Close()
	pieces = append(pieces, z.String())
	hdr := map[string]string{"content-type": "text/event-stream", "content-encoding": "gzip", "content-length": "999"}
	x := h.exchange("/v1/chat/completions", `{"model":"plain","stream":true}`, nil, 200, hdr, pieces...).end()
	if _, ok := x.respHeaders.m["content-length"]; ok {
		t.Error("content-length must go when the body changes")
	}
	zr, err := gzip.NewReader(bytes.NewReader(x.client))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if want := chunk("Hel") + chunk("lo") + "data: [DONE]\n\n"; err != nil || string(got) != want {
		t.Fatalf("client decodes %q (%v), want %q", got, err, want)
	}
	if x.md()[protocol.CostKeyTotalToken] != 14.0 {
		t.Errorf("metadata %v", x.md())
	}
}

func TestAcceptEncodingRestricted(t *testing.T) {
	h := responseHarness(t)
	r := h.do("POST", "/v1/chat/completions", `{"model":"plain","messages":[]}`, "accept-encoding", "br, gzip;q=0.5")
	defer r.filter.OnDestroy(api.Normal)
	if got := r.headers.m["accept-encoding"]; got != "gzip;q=0.5" {
		t.Errorf("accept-encoding %q", got)
	}
}

// The filter asks vLLM for a load report on a non-streaming request, reads
// it into the endpoint's numbers and removes it from the response.
func TestLoadReport(t *testing.T) {
	h := responseHarness(t)
	x := h.exchange("/v1/completions", `{"model":"plain","prompt":"x"}`, nil, 200, map[string]string{
		"content-type": "application/json", protocol.HeaderLoadMetrics: "TEXT named_metrics.num_requests_waiting=4.0, named_metrics.kv_cache_usage_perc=0.5",
	}, `{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	if x.headers.m[protocol.HeaderLoadMetricsFormat] != "TEXT" {
		t.Fatalf("request headers %v: no load report asked", x.headers.m)
	}
	if _, ok := x.respHeaders.m[protocol.HeaderLoadMetrics]; ok {
		t.Error("the report the client did not ask for reached it")
	}
	m := h.endpoint(x.endpoint()).Metrics()
	if m == nil || m.Waiting != 4 || m.KVCacheUsage != 0.5 || !m.Fresh(time.Now(), time.Second) {
		t.Errorf("endpoint metrics %+v", m)
	}
	x.end()
	// A client that asked keeps the header; streams are not asked.
	x = h.exchange("/v1/completions", `{"model":"plain","prompt":"x"}`, []string{protocol.HeaderLoadMetricsFormat, "JSON"}, 200,
		map[string]string{protocol.HeaderLoadMetrics: `JSON {"named_metrics": {"num_requests_waiting": 1.0}}`}).end()
	if _, ok := x.respHeaders.m[protocol.HeaderLoadMetrics]; !ok {
		t.Error("the client asked for the report")
	}
	x = h.exchange("/v1/completions", `{"model":"plain","prompt":"x","stream":true}`, nil, 200, sse).end()
	if _, ok := x.headers.m[protocol.HeaderLoadMetricsFormat]; ok {
		t.Error("vLLM sends no report on streams: not asked")
	}
}

// Streams feed the endpoint's observed latency: the time to first token
// as soon as the first byte is in, long before the stream ends; the time
// per output token at the end.
func TestLatencyFeedback(t *testing.T) {
	h := responseHarness(t)
	x := h.exchange("/v1/chat/completions", `{"model":"plain","stream":true}`, nil, 200, sse)
	ep := h.endpoint(x.endpoint())
	x.filter.EncodeData(&fakeBuffer{b: []byte(chunk("a"))}, false)
	if l, ok := ep.Latency(time.Now()); !ok || l.TTFT <= 0 || l.TPOT != 0 || l.Duration != 0 {
		t.Errorf("after the first chunk: latency %+v (observed %v), want a TTFT and no TPOT or duration yet", l, ok)
	}
	x.filter.EncodeData(&fakeBuffer{b: []byte(chunk("b") + chunk("c") + usageChunk + "data: [DONE]\n\n")}, true)
	x.end()
	if l, _ := ep.Latency(time.Now()); l.TPOT <= 0 || l.Duration < l.TTFT {
		t.Errorf("after the stream: latency %+v, want a TPOT and the duration", l)
	}
}

func TestGenAIMetricsRecorded(t *testing.T) {
	h := responseHarness(t)
	before := tokenSum(t, "llama", "output")
	h.exchange("/v1/chat/completions", `{"model":"llama","stream":true}`, nil, 200, sse, chunk("a"), usageChunk+"data: [DONE]\n\n").end()
	if got := tokenSum(t, "llama", "output") - before; got != 4 {
		t.Errorf("output tokens recorded %v, want 4", got)
	}
	if got := allTokens[1].Load(); got < 4 {
		t.Errorf("output token counter %d", got)
	}
}

func tokenSum(t *testing.T, model, typ string) float64 {
	t.Helper()
	fams, err := genai.Default.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != genai.MetricTokenUsage {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, genai.LabelOriginalModel) == model && label(m, genai.LabelTokenType) == typ {
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return sum
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
