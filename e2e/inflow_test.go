package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/e2e/harness"
)

const testIDHeader = "x-test-id"

// received finds the one backend that got the request tagged id.
func received(t *testing.T, id string, backends ...*harness.Backend) (*harness.Backend, harness.Recorded) {
	t.Helper()
	var gotB *harness.Backend
	var got harness.Recorded
	n := 0
	for _, b := range backends {
		for _, r := range b.Requests() {
			if r.Header.Get(testIDHeader) == id {
				gotB, got = b, r
				n++
			}
		}
	}
	if n != 1 {
		t.Fatalf("request %s reached %d backends, want exactly 1", id, n)
	}
	return gotB, got
}

// checkRouted verifies what Inflow promises the backend: the model rewritten
// in the body, the client's model in x-ai-eg-model, and the endpoint header
// naming the backend that really received the request.
func checkRouted(t *testing.T, b *harness.Backend, r harness.Recorded) {
	t.Helper()
	if r.Model != "llama-3-8b" {
		t.Errorf("backend saw model %q, want the rewrite llama-3-8b", r.Model)
	}
	if got := r.Header.Get("x-ai-eg-model"); got != "llama" {
		t.Errorf("x-ai-eg-model = %q, want llama", got)
	}
	if got := r.Header.Get("x-gateway-destination-endpoint"); got != b.Addr {
		t.Errorf("x-gateway-destination-endpoint = %q, but %s (%s) received the request", got, b.Name, b.Addr)
	}
	if !json.Valid(r.Body) {
		t.Errorf("backend received invalid JSON (content-length not recomputed?): %q", r.Body)
	}
}

func chatParams(model, content string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(content)},
	}
}

func completionParams(model, prompt string) openai.CompletionNewParams {
	return openai.CompletionNewParams{
		Model:  openai.CompletionNewParamsModel(model),
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
	}
}

func TestInflowNonStreaming(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	h := startHost(t, harness.HostOptions{PluginName: harness.InflowPlugin, Config: inflowConfig(0, b1, b2)})
	c := client(h)

	t.Run("chat", func(t *testing.T) {
		resp, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi"), option.WithHeader(testIDHeader, "chat"))
		if err != nil {
			t.Fatalf("chat: %v", err)
		}
		b, r := received(t, "chat", b1, b2)
		checkRouted(t, b, r)
		if got := resp.Choices[0].Message.Content; got != "hello from "+b.Name {
			t.Errorf("content = %q, want the answer of %s", got, b.Name)
		}
	})
	t.Run("completions", func(t *testing.T) {
		resp, err := c.Completions.New(testContext(t), completionParams("llama", "once upon"), option.WithHeader(testIDHeader, "compl"))
		if err != nil {
			t.Fatalf("completions: %v", err)
		}
		b, r := received(t, "compl", b1, b2)
		checkRouted(t, b, r)
		if r.Path != "/v1/completions" || resp.Choices[0].Text != "hello from "+b.Name {
			t.Errorf("path %s, text %q", r.Path, resp.Choices[0].Text)
		}
	})
	t.Run("models", func(t *testing.T) {
		page, err := c.Models.List(testContext(t))
		if err != nil {
			t.Fatalf("models: %v", err)
		}
		if len(page.Data) != 1 || page.Data[0].ID != "llama" {
			t.Errorf("models = %+v, want [llama]", page.Data)
		}
	})
	if !inflowRan(t, h) {
		t.Error("inflow_requests_total is absent or 0: the filter did not run")
	}
}

// streamHost starts a host whose backends hold every stream after its first
// chunk until gate is closed.
func streamHost(t *testing.T) (*harness.Host, chan struct{}, []*harness.Backend) {
	gate := make(chan struct{})
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	b1.Gate, b2.Gate = gate, gate
	h := startHost(t, harness.HostOptions{PluginName: harness.InflowPlugin, Config: inflowConfig(0, b1, b2)})
	return h, gate, []*harness.Backend{b1, b2}
}

// firstChunkWait bounds the wait for chunk 1 while the backend holds chunk 2;
// it is well below harness.gateTimeout, after which the backend gives up.
const firstChunkWait = 5 * time.Second

// nextWhileGated calls next (a stream's Next) while the backends still hold
// the rest of the stream, failing the test if it does not return in time.
func nextWhileGated(t *testing.T, next func() bool, gate chan struct{}) bool {
	t.Helper()
	res := make(chan bool, 1)
	go func() { res <- next() }()
	select {
	case ok := <-res:
		return ok
	case <-time.After(firstChunkWait):
		close(gate)
		<-res
		t.Fatalf("the first chunk did not arrive within %v while the backend held the rest: the response is buffered", firstChunkWait)
		return false
	}
}

func TestInflowChatStreamingIsIncremental(t *testing.T) {
	t.Parallel()
	h, gate, backends := streamHost(t)
	c := client(h)
	stream := c.Chat.Completions.NewStreaming(testContext(t), chatParams("llama", "hi"), option.WithHeader(testIDHeader, "s"))
	defer stream.Close()
	// The backend sends chunk 2 only after the gate opens: if the host or
	// the filter buffered the response, the first chunk would not arrive.
	if !nextWhileGated(t, stream.Next, gate) {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	if got := stream.Current().Choices[0].Delta.Content; got != harness.StreamChunks[0] {
		t.Fatalf("first chunk %q, want %q", got, harness.StreamChunks[0])
	}
	close(gate)
	text := harness.StreamChunks[0]
	for stream.Next() {
		if ch := stream.Current().Choices; len(ch) > 0 {
			text += ch[0].Delta.Content
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if want := strings.Join(harness.StreamChunks, ""); text != want {
		t.Errorf("streamed %q, want %q", text, want)
	}
	b, r := received(t, "s", backends...)
	checkRouted(t, b, r)
}

func TestInflowCompletionsStreamingIsIncremental(t *testing.T) {
	t.Parallel()
	h, gate, backends := streamHost(t)
	c := client(h)
	stream := c.Completions.NewStreaming(testContext(t), completionParams("llama", "p"), option.WithHeader(testIDHeader, "cs"))
	defer stream.Close()
	if !nextWhileGated(t, stream.Next, gate) {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	if got := stream.Current().Choices[0].Text; got != harness.StreamChunks[0] {
		t.Fatalf("first chunk %q, want %q", got, harness.StreamChunks[0])
	}
	close(gate)
	n := 1
	for stream.Next() {
		n++
	}
	if err := stream.Err(); err != nil || n != len(harness.StreamChunks) {
		t.Fatalf("stream: %d chunks, err %v", n, err)
	}
	b, r := received(t, "cs", backends...)
	checkRouted(t, b, r)
}

func apiError(t *testing.T, err error, status int) *openai.Error {
	t.Helper()
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("want an OpenAI API error with status %d, got %v", status, err)
	}
	if apiErr.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", apiErr.StatusCode, status, apiErr.RawJSON())
	}
	if apiErr.Message == "" || apiErr.Type == "" {
		t.Errorf("error body is not OpenAI-shaped: %s", apiErr.RawJSON())
	}
	return apiErr
}

func noBackendGot(t *testing.T, backends ...*harness.Backend) {
	t.Helper()
	for _, b := range backends {
		if n := len(b.Requests()); n != 0 {
			t.Errorf("%s received %d requests, want none", b.Name, n)
		}
	}
}

func TestInflowErrors(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	const maxBody = 4096
	h := startHost(t, harness.HostOptions{PluginName: harness.InflowPlugin, Config: inflowConfig(maxBody, b)})
	c := client(h)

	t.Run("unknown model 404", func(t *testing.T) {
		_, err := c.Chat.Completions.New(testContext(t), chatParams("nope", "hi"))
		apiError(t, err, http.StatusNotFound)
	})
	t.Run("bad JSON 400", func(t *testing.T) {
		resp, err := http.Post(h.URL("/v1/chat/completions"), "application/json", strings.NewReader(`{"model": "llama",`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var e struct {
			Error struct{ Message, Type string } `json:"error"`
		}
		if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
			t.Fatalf("status %d body %s, want 400 with an OpenAI error", resp.StatusCode, body)
		}
	})
	t.Run("oversize 413", func(t *testing.T) {
		_, err := c.Chat.Completions.New(testContext(t), chatParams("llama", strings.Repeat("x", 2*maxBody)))
		apiError(t, err, http.StatusRequestEntityTooLarge)
	})
	noBackendGot(t, b)
}

// Envoy's own per-stream buffer limit answers 413 before the filter sees the
// body when the filter buffers (StopAndBuffer) more than it.
func TestInflowEnvoyBufferLimit413(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	const limit = 32 * 1024
	h := startHost(t, harness.HostOptions{PluginName: harness.InflowPlugin, Config: inflowConfig(0, b), BufferLimit: limit})
	c := client(h)
	_, err := c.Chat.Completions.New(testContext(t), chatParams("llama", strings.Repeat("x", 3*limit)))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("want 413, got %v", err)
	}
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "small")); err != nil {
		t.Fatalf("a small request after the 413: %v", err)
	}
	if len(b.Requests()) != 1 {
		t.Errorf("backend got %d requests, want only the small one", len(b.Requests()))
	}
}

// Many clients in parallel over 2 workers, streaming and not: every request
// must land on the endpoint the filter chose.
func TestInflowParallelClients(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	h := startHost(t, harness.HostOptions{PluginName: harness.InflowPlugin, Config: inflowConfig(0, b1, b2), Concurrency: 2})
	c := client(h)
	const clients, perClient = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, clients*perClient)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perClient {
				id := fmt.Sprintf("p%d-%d", i, j)
				ctx := testContext(t)
				var err error
				switch j % 3 {
				case 0:
					_, err = c.Chat.Completions.New(ctx, chatParams("llama", id), option.WithHeader(testIDHeader, id))
				case 1:
					_, err = c.Completions.New(ctx, completionParams("llama", id), option.WithHeader(testIDHeader, id))
				default:
					s := c.Chat.Completions.NewStreaming(ctx, chatParams("llama", id), option.WithHeader(testIDHeader, id))
					for s.Next() {
					}
					err = s.Err()
					s.Close()
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range clients {
		for j := range perClient {
			b, r := received(t, fmt.Sprintf("p%d-%d", i, j), b1, b2)
			checkRouted(t, b, r)
		}
	}
	if got := stat(t, h, "inflow_requests_total"); got < clients*perClient {
		t.Errorf("inflow_requests_total = %d, want >= %d", got, clients*perClient)
	}
}

// Envoy silently passes requests through when plugin_name matches no
// registered plugin; the tests must notice that instead of trusting a 200.
func TestWrongPluginNameIsDetected(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	h := startHost(t, harness.HostOptions{
		Library: harness.Out("inflow.so"), PluginName: "inflw", Config: inflowConfig(0, b), DefaultUpstream: b.Addr,
	})
	c := client(h)
	// With Inflow running this would be a 404; the pass-through forwards it.
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("nope", "hi"), option.WithHeader(testIDHeader, "w")); err != nil {
		t.Fatalf("pass-through request: %v", err)
	}
	_, r := received(t, "w", b)
	if r.Model != "nope" || r.Header.Get("x-ai-eg-model") != "" {
		t.Errorf("request was modified (model %q, x-ai-eg-model %q) although no filter ran", r.Model, r.Header.Get("x-ai-eg-model"))
	}
	if inflowRan(t, h) {
		t.Fatal("inflowRan reports true for a plugin name Inflow does not register")
	}
}

// Like Envoy refusing the listener, the host must not start with a config
// the filter rejects.
func TestInvalidConfigRefusesToStart(t *testing.T) {
	t.Parallel()
	cfg := inflowConfig(0)
	cfg["no_such_field"] = true
	_, err := harness.StartHost(testContext(t), t.TempDir(), harness.HostOptions{PluginName: harness.InflowPlugin, Config: cfg})
	if err == nil || !strings.Contains(err.Error(), "failed to parse plugin config") {
		t.Fatalf("want a refusal mentioning the plugin config, got %v", err)
	}
}

// A client that goes away mid-stream must not take the host down or leave it
// unable to serve: the stream is reset and the upstream request dropped.
func TestClientDisconnectMidStream(t *testing.T) {
	t.Parallel()
	h, gate, _ := streamHost(t)
	c := client(h)
	ctx, cancel := context.WithCancel(testContext(t))
	stream := c.Chat.Completions.NewStreaming(ctx, chatParams("llama", "hi"))
	if !nextWhileGated(t, stream.Next, gate) {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	cancel() // closes the client connection while the backend holds chunk 2
	stream.Close()
	close(gate)
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "again")); err != nil {
		t.Fatalf("request after a client disconnect: %v", err)
	}
	// The reset stream is destroyed on the worker shortly after.
	deadline := testContext(t)
	for stat(t, h, "http.envoyhost.downstream_rq_reset") < 1 {
		select {
		case <-deadline.Done():
			t.Fatal("the disconnected stream was never reset")
		default:
		}
	}
}

// The host accepts plugin_config in the forms Envoy configs use; each must
// reach Inflow's parser intact (a corrupt encoding would be refused).
func TestPluginConfigForms(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	value, err := json.Marshal(inflowConfig(0, b))
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string]string{
		"udpa TypedStruct": `{"@type":"type.googleapis.com/udpa.type.v1.TypedStruct","type_url":"type.googleapis.com/inflow.v1.FilterConfig","value":` + string(value) + `}`,
		"Struct":           `{"@type":"type.googleapis.com/google.protobuf.Struct",` + string(value[1:]),
		"bare value":       string(value),
	}
	for name, raw := range forms {
		t.Run(name, func(t *testing.T) {
			h := startHost(t, harness.HostOptions{PluginName: harness.InflowPlugin, RawConfig: []byte(raw)})
			c := client(h)
			if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi")); err != nil {
				t.Fatalf("chat: %v", err)
			}
			if !inflowRan(t, h) {
				t.Fatal("inflow did not run")
			}
		})
	}
}
