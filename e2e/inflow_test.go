package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/protocol"
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
	if got := r.Header.Get(protocol.HeaderModel); got != "llama" {
		t.Errorf("%s = %q, want llama", protocol.HeaderModel, got)
	}
	if got := r.Header.Get(protocol.HeaderDestination); got != b.Addr {
		t.Errorf("%s = %q, but %s (%s) received the request", protocol.HeaderDestination, got, b.Name, b.Addr)
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
	h := startInflowHost(t, inflowConfig(0, b1, b2))
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
		t.Errorf("%s is absent or 0: the filter did not run", protocol.StatRequests)
	}
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
	h := startInflowHost(t, inflowConfig(maxBody, b))
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

// Many clients in parallel over 2 workers, streaming and not: every request
// must land on the endpoint the filter chose.
func TestInflowParallelClients(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	h := startInflowHost(t, inflowConfig(0, b1, b2))
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
	if got := stat(t, h, protocol.StatRequests); got < clients*perClient {
		t.Errorf("%s = %d, want >= %d", protocol.StatRequests, got, clients*perClient)
	}
}

// The other OpenAI-style endpoints are routed like chat; a path the
// generated routes do not know gets Envoy's no-route 404 (in OpenAI's shape)
// and reaches no model server, whatever model its body names.
func TestInflowOtherEndpointsAndNoRoute(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	h := startInflowHost(t, inflowConfig(0, b))
	bodies := map[string]string{
		"/v1/embeddings": `{"model":"llama","input":"hello"}`,
		"/v1/responses":  `{"model":"llama","input":"hello"}`,
		"/v1/messages":   `{"model":"llama","max_tokens":8,"messages":[{"role":"user","content":"hello"}]}`,
	}
	post := func(path, body string) (*http.Response, string) {
		req, _ := http.NewRequestWithContext(testContext(t), http.MethodPost, h.URL(path), strings.NewReader(body))
		req.Header.Set("content-type", "application/json")
		req.Header.Set(testIDHeader, path)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for path, body := range bodies {
		if resp, _ := post(path, body); resp.StatusCode != 200 {
			t.Errorf("%s: status %d", path, resp.StatusCode)
			continue
		}
		got, r := received(t, path, b)
		checkRouted(t, got, r)
	}
	resp, body := post("/other", `{"model":"llama"}`)
	var e struct {
		Error struct{ Message, Type string } `json:"error"`
	}
	if resp.StatusCode != http.StatusNotFound || json.Unmarshal([]byte(body), &e) != nil || e.Error.Type == "" {
		t.Errorf("/other: status %d %s, want an OpenAI-shaped 404", resp.StatusCode, body)
	}
	if n := len(b.Requests()); n != len(bodies) {
		t.Errorf("the model server got %d requests, want %d", n, len(bodies))
	}
}
