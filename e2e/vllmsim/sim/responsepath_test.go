package sim

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
)

func TestPyFloat(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0.0", 2: "2.0", 0.3: "0.3", 0.25: "0.25", 1e-05: "1e-05", 0.0001: "0.0001",
		1e16: "1e+16", 1234567890123456: "1234567890123456.0", 1.5e+20: "1.5e+20", 1e-300: "1e-300",
		math.Copysign(0, -1): "-0.0", math.Inf(1): "inf", 1.0 / 3: "0.3333333333333333",
	} {
		if got := pyFloat(v); got != want {
			t.Errorf("pyFloat(%v) = %q, want %q", v, got, want)
		}
	}
}

func postWith(t *testing.T, url, body string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// No transparent decompression: the tests look at what is on the wire.
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// The load report is vLLM's text exactly, only on non-streaming chat and
// completions responses that asked for it.
func TestLoadReport(t *testing.T) {
	s := startServer(t, fastOptions())
	chat := `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":1}`
	compl := `{"model":"m","prompt":"hi","max_tokens":1}`
	stream := `{"model":"m","prompt":"hi","max_tokens":1,"stream":true}`
	got := func(path, body, format string) string {
		h := map[string]string{}
		if format != "" {
			h[HeaderLoadMetricsFormat] = format
		}
		resp := postWith(t, s.URL()+path, body, h)
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Header.Get(HeaderLoadMetrics)
	}
	if v := got("/v1/chat/completions", chat, "TEXT"); v != "TEXT named_metrics.num_requests_waiting=0.0, named_metrics.kv_cache_usage_perc=0.0" {
		t.Errorf("idle TEXT report %q", v)
	}
	waiting, kv := 3, 0.25
	s.SetMetricsOverride(MetricsOverride{NumRequestsWaiting: &waiting, KVCacheUsagePerc: &kv})
	for _, tc := range []struct{ path, body, format, want string }{
		{"/v1/chat/completions", chat, "TEXT", "TEXT named_metrics.num_requests_waiting=3.0, named_metrics.kv_cache_usage_perc=0.25"},
		{"/v1/completions", compl, "json", `JSON {"named_metrics": {"num_requests_waiting": 3.0, "kv_cache_usage_perc": 0.25}}`},
		{"/v1/completions", compl, "", ""},
		{"/v1/completions", compl, "BINARY", ""},
		{"/v1/completions", stream, "TEXT", ""},
		{"/v1/embeddings", `{"model":"m","input":"x"}`, "TEXT", ""},
	} {
		if v := got(tc.path, tc.body, tc.format); v != tc.want {
			t.Errorf("%s %s format %q: report %q, want %q", tc.path, tc.body, tc.format, v, tc.want)
		}
	}
}

// sseData returns the data of each event of a stream, with its event name.
func sseEvents(t *testing.T, r io.Reader) (names, data []string) {
	t.Helper()
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	name := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			names, data = append(names, name), append(data, strings.TrimPrefix(line, "data: "))
			name = ""
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	return names, data
}

func TestStreamErrorFault(t *testing.T) {
	s := startServer(t, fastOptions())
	if err := s.SetFault(Fault{Mode: FaultStreamError, AfterTokens: 2}); err != nil {
		t.Fatal(err)
	}
	resp := postWith(t, s.URL()+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true}`, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	_, data := sseEvents(t, resp.Body)
	want := `{"error": {"message": "vllmsim: injected engine failure mid-stream", "type": "InternalServerError", "param": null, "code": 500}}`
	if len(data) != 5 || data[3] != want || data[4] != "[DONE]" {
		t.Fatalf("events %q: want role, 2 tokens, vLLM's error, [DONE]", data)
	}
	status, _ := post(t, s.URL()+"/v1/completions", `{"model":"m","prompt":"x"}`)
	if status != 500 {
		t.Errorf("non-streaming request under stream_error: %d, want 500", status)
	}
}

// The reset fault cuts the connection: a stream after its first tokens,
// without its end; any other request before a byte of its response.
func TestResetFault(t *testing.T) {
	s := startServer(t, fastOptions())
	if err := s.SetFault(Fault{Mode: FaultReset, AfterTokens: 2}); err != nil {
		t.Fatal(err)
	}
	resp := postWith(t, s.URL()+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stream":true}`, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(string(body), `"delta":{"content":`) || strings.Contains(string(body), "[DONE]") {
		t.Fatalf("stream %q, err %v: want its first tokens, then the connection cut", body, err)
	}
	for _, path := range []string{"/v1/completions", "/v1/embeddings"} {
		req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, s.URL()+path, strings.NewReader(`{"model":"m","prompt":"x","input":"x"}`))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("%s under the reset fault: status %d, want the connection cut", path, resp.StatusCode)
		}
	}
}

func TestGzipResponses(t *testing.T) {
	o := fastOptions()
	o.Gzip = true
	s := startServer(t, o)
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}`
	resp := postWith(t, s.URL()+"/v1/chat/completions", body, map[string]string{"Accept-Encoding": "br;q=1, gzip;q=0.5"})
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	_, data := sseEvents(t, zr)
	if len(data) != 6 || data[5] != "[DONE]" || !strings.Contains(data[4], `"usage":{"prompt_tokens"`) {
		t.Fatalf("decoded events %q", data)
	}
	resp = postWith(t, s.URL()+"/v1/chat/completions", body, map[string]string{"Accept-Encoding": "gzip;q=0"})
	if resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("q=0 refuses gzip, got %q", resp.Header.Get("Content-Encoding"))
	}
	resp = postWith(t, s.URL()+"/v1/completions", `{"model":"m","prompt":"x"}`, map[string]string{"Accept-Encoding": "gzip"})
	zr, err = gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Usage usageJSON }
	if err := json.NewDecoder(zr).Decode(&c); err != nil || c.Usage.PromptTokens != 1 {
		t.Errorf("gzip JSON: %+v, %v", c, err)
	}
}

func TestResponsesAPI(t *testing.T) {
	s := startServer(t, fastOptions())
	status, body := post(t, s.URL()+"/v1/responses", `{"model":"m","instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"hello"}]}],"max_output_tokens":2}`)
	var obj struct {
		Object, Status, Model string
		Output                []struct{ Content []struct{ Text string } }
		Usage                 struct {
			InputTokens, OutputTokens, TotalTokens int `json:"-"`
		}
	}
	var raw map[string]json.RawMessage
	if status != 200 || json.Unmarshal([]byte(body), &obj) != nil || json.Unmarshal([]byte(body), &raw) != nil {
		t.Fatalf("status %d body %s", status, body)
	}
	if obj.Object != "response" || obj.Status != "incomplete" || obj.Output[0].Content[0].Text != "The simulated" {
		t.Errorf("response %s", body)
	}
	if !strings.Contains(string(raw["usage"]), `"output_tokens":2`) || !strings.Contains(string(raw["usage"]), `"input_tokens_details":{"cached_tokens":0}`) {
		t.Errorf("usage %s", raw["usage"])
	}

	resp := postWith(t, s.URL()+"/v1/responses", `{"model":"m","input":"hello","max_output_tokens":3,"stream":true}`, nil)
	names, data := sseEvents(t, resp.Body)
	wantNames := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"}
	if strings.Join(names, " ") != strings.Join(wantNames, " ") {
		t.Fatalf("events %v, want %v", names, wantNames)
	}
	var last struct {
		Type     string
		Response struct {
			Usage struct {
				InputTokens  int `json:"input_tokens"`
				OutputTokens int `json:"output_tokens"`
				TotalTokens  int `json:"total_tokens"`
			}
		}
	}
	if err := json.Unmarshal([]byte(data[len(data)-1]), &last); err != nil || last.Type != "response.incomplete" ||
		last.Response.Usage.OutputTokens != 3 || last.Response.Usage.TotalTokens != last.Response.Usage.InputTokens+3 {
		t.Errorf("final event %s", data[len(data)-1])
	}
}

func TestMessagesAPI(t *testing.T) {
	o := fastOptions()
	o.BlockSize = 4
	s := startServer(t, o)
	system := strings.Repeat("abcd", 8)
	req := `{"model":"m","max_tokens":4,"system":"` + system + `","messages":[{"role":"user","content":"hello there"}]}`
	if status, body := post(t, s.URL()+"/v1/messages", `{"model":"m","messages":[{"role":"user","content":"x"}]}`); status != 400 || !strings.Contains(body, "max_tokens") {
		t.Errorf("missing max_tokens: %d %s", status, body)
	}
	var m struct {
		Type, Role, Model string
		StopReason        string `json:"stop_reason"`
		Content           []struct{ Type, Text string }
		Usage             struct {
			InputTokens  int `json:"input_tokens"`
			CacheRead    int `json:"cache_read_input_tokens"`
			OutputTokens int `json:"output_tokens"`
		}
	}
	for i := range 2 { // the second request reads the system prompt from the prefix cache
		status, body := post(t, s.URL()+"/v1/messages", req)
		if status != 200 || json.Unmarshal([]byte(body), &m) != nil {
			t.Fatalf("status %d body %s", status, body)
		}
		if m.Type != "message" || m.StopReason != "max_tokens" || m.Content[0].Text != "The simulated model answers" || m.Usage.OutputTokens != 4 {
			t.Errorf("message %s", body)
		}
		if i == 1 && m.Usage.CacheRead == 0 {
			t.Errorf("second request: no cache_read_input_tokens: %s", body)
		}
	}
	prompt := m.Usage.InputTokens + m.Usage.CacheRead
	resp := postWith(t, s.URL()+"/v1/messages", strings.Replace(req, `"max_tokens":4`, `"max_tokens":2,"stream":true`, 1), nil)
	names, data := sseEvents(t, resp.Body)
	want := "message_start content_block_start ping content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if strings.Join(names, " ") != want {
		t.Fatalf("events %v, want %s", names, want)
	}
	var start struct {
		Message struct {
			Usage struct {
				InputTokens int `json:"input_tokens"`
				CacheRead   int `json:"cache_read_input_tokens"`
			}
		}
	}
	if err := json.Unmarshal([]byte(data[0]), &start); err != nil || start.Message.Usage.InputTokens+start.Message.Usage.CacheRead != prompt {
		t.Errorf("message_start %s, want %d prompt tokens", data[0], prompt)
	}
	if !strings.Contains(data[6], `"usage":{"output_tokens":2}`) {
		t.Errorf("message_delta %s", data[6])
	}
}

func TestDeterministicIDs(t *testing.T) {
	o := fastOptions()
	o.DeterministicIDs = true
	s := startServer(t, o)
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true}`
	read := func() []byte {
		b, err := io.ReadAll(postWith(t, s.URL()+"/v1/chat/completions", body, nil).Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if a, b := read(), read(); !bytes.Equal(a, b) {
		t.Errorf("equal requests, different bytes:\n%s\n%s", a, b)
	}
}
