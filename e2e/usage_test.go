package e2e

import (
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/genai"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// The response path end to end: the official OpenAI client through the
// ABI host and the real inflow.so to a vLLM simulator.

const servedModel = "llama-3-8b"

// usageStack is one simulator behind the host, serving "llama" rewritten
// to servedModel, with token costs, the GenAI metrics listener and an
// access log in the control plane's default format (plus the one custom
// cost) on.
type usageStack struct {
	sim       *sim.Server
	host      *harness.Host
	metrics   string // ip:port of the GenAI metrics listener
	accessLog string // the host's access log file
}

// costWeighted is the stack's CEL cost: not a conventional key, so the
// access log format is the default plus this one, as a user would add it.
const costWeighted = "weighted"

func startUsageStack(t *testing.T, gzipped bool) *usageStack {
	t.Helper()
	s, err := sim.Start(testContext(t), sim.Options{
		Model: servedModel, TTFTBase: time.Millisecond, PrefillPerToken: time.Microsecond, ITL: 100 * time.Microsecond,
		DeterministicIDs: true, Gzip: gzipped,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	st := &usageStack{sim: s, metrics: freeAddr(t), accessLog: filepath.Join(t.TempDir(), "access.log")}
	format := spec.DefaultAccessLogJSON()
	format["genai_cost_"+costWeighted] = "%DYNAMIC_METADATA(" + protocol.MetadataNamespaceAIGateway + ":" + costWeighted + ")%"
	// served by the control plane, as users run it: the costs and the
	// GenAI metrics listener reach the filter over ECDS
	st.host = startInflowHost(t, map[string]any{
		"models": []map[string]any{{"name": "llama", "pool": "sims", "rewrite": []map[string]any{{"model": servedModel}}}},
		"pools":  []map[string]any{{"name": "sims", "endpoints": []string{s.Addr()}}},
		"costs": []map[string]any{
			{"metadata_key": protocol.CostKeyInputToken, "type": "InputToken"},
			{"metadata_key": protocol.CostKeyOutputToken, "type": "OutputToken"},
			{"metadata_key": protocol.CostKeyTotalToken, "type": "TotalToken"},
			{"metadata_key": costWeighted, "type": "CEL", "cel": "input_tokens + 3u * output_tokens"},
		},
		"genai_metrics": map[string]any{"address": st.metrics},
		"access_log":    map[string]any{"path": st.accessLog, "json_format": format},
	})
	return st
}

// logLine waits for the access log line of the request sent with
// user-agent ua and returns it.
func (st *usageStack) logLine(t *testing.T, ua string) map[string]any {
	t.Helper()
	var line map[string]any
	poll.Eventually(t, "the access log line of "+ua, func() bool {
		for _, l := range readJSONLines(t, st.accessLog) {
			if l["user-agent"] == ua {
				line = l
				return true
			}
		}
		return false
	})
	return line
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// raw posts body and returns the response with its body read (decoded
// only if the transport did it).
func raw(t *testing.T, url, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

const streamBody = `{"model":%q,"stream":true,"max_tokens":5,"messages":[{"role":"user","content":"Tell me a story."}]}`

func streamChatBody(model string) string { return strings.Replace(streamBody, "%q", `"`+model+`"`, 1) }

// A streaming client gets, byte for byte, what the server sends it without
// Inflow, whether or not it asked for usage: when it did not, the filter
// asked the server for usage, charged it and removed that chunk; when it
// did, the usage chunk is the server's, passed on untouched.
func TestStreamIsByteIdenticalWithAndWithoutIncludeUsage(t *testing.T) {
	t.Parallel()
	st := startUsageStack(t, false)
	withUsage := func(model string) string {
		return strings.Replace(streamChatBody(model), `"stream":true`, `"stream":true,"stream_options":{"include_usage":true}`, 1)
	}
	for _, c := range []struct {
		name string
		body func(model string) string
	}{{"without include_usage", streamChatBody}, {"with include_usage", withUsage}} {
		_, direct := raw(t, st.sim.URL()+"/v1/chat/completions", c.body(servedModel))
		resp, via := raw(t, st.host.URL("/v1/chat/completions"), c.body("llama"))
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", c.name, resp.StatusCode, via)
		}
		if !bytes.Equal(via, direct) {
			t.Fatalf("%s, through Inflow:\n%s\ndirect:\n%s", c.name, via, direct)
		}
		if asked := c.body("x") != streamChatBody("x"); asked != bytes.Contains(via, []byte(`"usage"`)) {
			t.Fatalf("%s: the usage chunk reached the client: %v", c.name, !asked)
		}
	}
	// The server was asked for usage both times: the filter counted both
	// streams' 5 tokens.
	poll.Eventually(t, "output tokens in the GenAI metrics", func() bool { return tokens(t, st.metrics, "output") >= 10 })
}

func TestOpenAIClientStreaming(t *testing.T) {
	t.Parallel()
	st := startUsageStack(t, false)
	c := client(st.host)
	for _, includeUsage := range []bool{false, true} {
		params := chatParams("llama", "Tell me a story.")
		params.MaxTokens = openai.Int(5)
		if includeUsage {
			params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		}
		stream := c.Chat.Completions.NewStreaming(testContext(t), params)
		var text string
		var usage openai.CompletionUsage
		for stream.Next() {
			ch := stream.Current()
			if len(ch.Choices) > 0 {
				text += ch.Choices[0].Delta.Content
			}
			if ch.Usage.TotalTokens > 0 {
				usage = ch.Usage
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("include_usage %v: %v", includeUsage, err)
		}
		if text != "The simulated model answers with" {
			t.Errorf("streamed %q", text)
		}
		if includeUsage != (usage.CompletionTokens == 5) {
			t.Errorf("include_usage %v: client saw usage %+v", includeUsage, usage)
		}
	}
	resp, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Usage.CompletionTokens == 0 || resp.Model != servedModel {
		t.Errorf("non-streaming response %+v", resp)
	}
	// Both streams and the non-streaming response were accounted.
	poll.Eventually(t, "tokens counted", func() bool {
		return tokens(t, st.metrics, "output") >= 10+float64(resp.Usage.CompletionTokens)
	})
	fams := scrapeGenAI(t, st.metrics)
	if n := count(fams, genai.MetricTTFT, nil); n != 2 {
		t.Errorf("TTFT observations %d, want the 2 streams", n)
	}
	if n := count(fams, genai.MetricRequestDuration, map[string]string{genai.LabelOperation: "chat", genai.LabelOriginalModel: "llama", genai.LabelRequestModel: servedModel, genai.LabelResponseModel: servedModel}); n != 3 {
		t.Errorf("request durations %d, want 3", n)
	}
	// Envoy's /stats counts the tokens too (exported once a second).
	poll.Eventually(t, "token stats", statIs(t, st.host, protocol.TokenStat("output"), func(v int64) bool { return v >= 10 }))
	poll.Eventually(t, "per-model token stats", statIs(t, st.host, protocol.ModelTokenStat("llama", "input"), func(v int64) bool { return v > 0 }))
}

// vLLM reports an engine failure mid-stream as a data: {"error": ...}
// event in a 200 stream; the client's SDK raises it, the filter records a
// failed request and the endpoint cools down.
func TestMidStreamError(t *testing.T) {
	t.Parallel()
	st := startUsageStack(t, false)
	if err := st.sim.SetFault(sim.Fault{Mode: sim.FaultStreamError, AfterTokens: 2}); err != nil {
		t.Fatal(err)
	}
	params := chatParams("llama", "hi")
	params.MaxTokens = openai.Int(5)
	c := client(st.host)
	stream := c.Chat.Completions.NewStreaming(testContext(t), params)
	chunks := 0
	for stream.Next() {
		chunks++
	}
	if err := stream.Err(); err == nil || !strings.Contains(err.Error(), "injected engine failure") {
		t.Fatalf("after %d chunks: err %v, want the server's error", chunks, err)
	}
	poll.Eventually(t, "a failed request in the GenAI metrics", func() bool {
		return count(scrapeGenAI(t, st.metrics), genai.MetricRequestDuration, map[string]string{genai.LabelErrorType: "error_event"}) == 1
	})
}

// A gzip stream is decoded as it streams, stripped and re-encoded: the
// client decodes exactly the server's stream without the usage chunk.
func TestGzipStream(t *testing.T) {
	t.Parallel()
	st := startUsageStack(t, true)
	resp, direct := raw(t, st.sim.URL()+"/v1/chat/completions", streamChatBody(servedModel), "accept-encoding", "gzip")
	if resp.Header.Get("content-encoding") != "gzip" {
		t.Fatal("the simulator did not gzip")
	}
	resp, via := raw(t, st.host.URL("/v1/chat/completions"), streamChatBody("llama"), "accept-encoding", "br, gzip")
	if resp.StatusCode != 200 || resp.Header.Get("content-encoding") != "gzip" {
		t.Fatalf("status %d, content-encoding %q", resp.StatusCode, resp.Header.Get("content-encoding"))
	}
	if got, want := gunzip(t, via), gunzip(t, direct); !bytes.Equal(got, want) {
		t.Fatalf("through Inflow decodes to\n%s\ndirect:\n%s", got, want)
	}
	poll.Eventually(t, "tokens of the gzip stream", func() bool { return tokens(t, st.metrics, "output") >= 5 })
	// And the OpenAI client (Go's transport asks for gzip and decodes).
	params := chatParams("llama", "hi")
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	c := client(st.host)
	stream := c.Chat.Completions.NewStreaming(testContext(t), params)
	var usage int64
	for stream.Next() {
		usage = max(usage, stream.Current().Usage.TotalTokens)
	}
	if err := stream.Err(); err != nil || usage == 0 {
		t.Fatalf("gzip stream with usage: %v, usage %d", err, usage)
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// scrapeGenAI reads the filter's GenAI metrics; nil while its listener,
// which binds in the background once the config is parsed, is not up yet
// (callers poll).
func scrapeGenAI(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + genai.Path)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// tokens sums gen_ai_client_token_usage of one token type for "llama".
func tokens(t *testing.T, addr, typ string) float64 {
	var sum float64
	for _, m := range scrapeGenAI(t, addr)[genai.MetricTokenUsage].GetMetric() {
		if hasLabels(m, map[string]string{genai.LabelTokenType: typ, genai.LabelOriginalModel: "llama"}) {
			sum += m.GetHistogram().GetSampleSum()
		}
	}
	return sum
}

// count sums the sample counts of a histogram's series that have labels.
func count(fams map[string]*dto.MetricFamily, name string, labels map[string]string) uint64 {
	var n uint64
	for _, m := range fams[name].GetMetric() {
		if hasLabels(m, labels) {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			found++
		}
	}
	return found == len(want)
}

// The token metadata as users read it: Envoy's access log in the control
// plane's default format (Envoy AI Gateway's keys), one line per stream
// when it ends. Costs are written at the end of a 2xx response, a stream
// cut off included (at OnStreamComplete, with the usage last seen), and
// nothing for a non-2xx.
func TestTokenMetadataInTheAccessLog(t *testing.T) {
	t.Parallel()
	st := startUsageStack(t, false)
	c := client(st.host)
	agent := func(name string) option.RequestOption { return option.WithHeader("User-Agent", name) }
	costs := func(in, out int64) map[string]any {
		return map[string]any{
			"genai_tokens_input": float64(in), "genai_tokens_output": float64(out), "genai_tokens_total": float64(in + out),
			"genai_cost_" + costWeighted: float64(in + 3*out),
		}
	}
	check := func(name string, line, want map[string]any) {
		t.Helper()
		for k, v := range want {
			if line[k] != v {
				t.Errorf("%s: %s = %v (%T), want %v; line %v", name, k, line[k], line[k], v, line)
			}
		}
	}
	served := map[string]any{"response_code": float64(200), "genai_model_name": "llama",
		"genai_model_name_override": servedModel, "genai_backend_name": "sims", "genai_response_model": servedModel}

	resp, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi"), agent("whole"))
	if err != nil {
		t.Fatal(err)
	}
	line := st.logLine(t, "whole")
	check("non-streaming", line, served)
	check("non-streaming", line, costs(resp.Usage.PromptTokens, resp.Usage.CompletionTokens))
	if line["genai_token_latency_ttft"] != nil {
		t.Errorf("non-streaming response with a TTFT: %v", line)
	}

	params := chatParams("llama", "Tell me a story.")
	params.MaxTokens = openai.Int(5)
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(testContext(t), params, agent("stream"))
	var usage openai.CompletionUsage
	for stream.Next() {
		if u := stream.Current().Usage; u.TotalTokens > 0 {
			usage = u
		}
	}
	if err := stream.Err(); err != nil || usage.CompletionTokens != 5 {
		t.Fatalf("stream: %v, usage %+v", err, usage)
	}
	line = st.logLine(t, "stream")
	check("stream", line, served)
	check("stream", line, costs(usage.PromptTokens, usage.CompletionTokens))
	for _, k := range []string{"genai_token_latency_ttft", "genai_token_latency_itl"} {
		if v, ok := line[k].(float64); !ok || v < 0 {
			t.Errorf("stream: %s = %v, want a number of ms", k, line[k])
		}
	}

	// vLLM's continuous usage: every chunk reports the usage so far, so a
	// stream cut after 2 tokens is charged them
	if err := st.sim.SetFault(sim.Fault{Mode: sim.FaultReset, AfterTokens: 2}); err != nil {
		t.Fatal(err)
	}
	cut := `{"model":"llama","stream":true,"max_tokens":5,"stream_options":{"include_usage":true,"continuous_usage_stats":true},"messages":[{"role":"user","content":"Tell me a story."}]}`
	if err := postCut(t, st.host.URL("/v1/chat/completions"), cut, "cut"); err == nil {
		t.Fatal("the cut stream arrived whole")
	}
	line = st.logLine(t, "cut")
	check("cut off", line, served)
	check("cut off", line, map[string]any{"genai_tokens_output": float64(2),
		"response_code_details": "upstream_reset_after_response_started{protocol_error}", "response_flags": "UPE"})
	if in, ok := line["genai_tokens_input"].(float64); !ok || line["genai_tokens_total"] != in+2 {
		t.Errorf("cut off: input %v, total %v: want the usage of the last chunk", line["genai_tokens_input"], line["genai_tokens_total"])
	}

	if err := st.sim.SetFault(sim.Fault{Mode: sim.FaultFail}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi"), agent("failed")); err == nil {
		t.Fatal("the failing server's 500 was a success")
	}
	line = st.logLine(t, "failed")
	check("500", line, map[string]any{"response_code": float64(500), "genai_model_name": "llama"})
	for k, v := range line {
		if strings.HasPrefix(k, "genai_") && k != "genai_model_name" && v != nil {
			t.Errorf("500: %s = %v, want nothing written for a non-2xx", k, v)
		}
	}
}

// postCut posts body with user-agent ua and reads the whole response: the
// error is what a client sees of a stream cut off.
func postCut(t *testing.T, url, body, ua string) error {
	t.Helper()
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("content-type", "application/json")
	req.Header.Set("user-agent", ua)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want the stream's 200", resp.StatusCode)
	}
	_, err = io.ReadAll(resp.Body)
	return err
}
