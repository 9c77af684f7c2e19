package sim

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

func TestErrorResponses(t *testing.T) {
	o := fastOptions()
	o.KVBlocks, o.BlockSize, o.LoRAs = 8, 4, []string{"a"} // 32-token context
	s := startServer(t, o)
	tests := []struct {
		name, path, body string
		status           int
		errType, message string // message: a substring
	}{
		{"unknown model", "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, "NotFoundError", "The model `nope` does not exist."},
		{"unknown model completions", "/v1/completions", `{"model":"nope","prompt":"hi"}`, 404, "NotFoundError", "does not exist"},
		{"unknown model embeddings", "/v1/embeddings", `{"model":"nope","input":"hi"}`, 404, "NotFoundError", "does not exist"},
		{"bad JSON", "/v1/chat/completions", `{"model":`, 400, "BadRequestError", "JSON decode error"},
		{"wrong type", "/v1/completions", `{"model":"m","prompt":"x","max_tokens":"ten"}`, 400, "BadRequestError", "max_tokens"},
		{"missing messages", "/v1/chat/completions", `{"model":"m"}`, 400, "BadRequestError", "messages"},
		{"missing role", "/v1/chat/completions", `{"model":"m","messages":[{"content":"hi"}]}`, 400, "BadRequestError", "role"},
		{"missing prompt", "/v1/completions", `{"model":"m"}`, 400, "BadRequestError", "prompt"},
		{"missing input", "/v1/embeddings", `{"model":"m"}`, 400, "BadRequestError", "input"},
		{"max_tokens zero", "/v1/completions", `{"model":"m","prompt":"x","max_tokens":0}`, 400, "BadRequestError", "max_tokens must be at least 1"},
		{"stream_options without stream", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}`, 400, "BadRequestError", "stream=True"},
		{"n above 1", "/v1/completions", `{"model":"m","prompt":"x","n":2}`, 400, "BadRequestError", "n=2"},
		{"batched prompts", "/v1/completions", `{"model":"m","prompt":["x","y"]}`, 400, "BadRequestError", "one prompt"},
		{"too long", "/v1/completions", `{"model":"m","prompt":"` + strings.Repeat("x", 200) + `","max_tokens":5}`, 400, "BadRequestError", "maximum context length is 32 tokens"},
		{"bad stop", "/v1/completions", `{"model":"m","prompt":"x","stop":7}`, 400, "BadRequestError", "stop"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, s.URL()+tc.path, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			var er struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    int     `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &er); err != nil {
				t.Fatalf("error body is not JSON: %v: %s", err, body)
			}
			if er.Error.Type != tc.errType || er.Error.Code != tc.status || !strings.Contains(er.Error.Message, tc.message) {
				t.Errorf("error = %+v, want type %s code %d message containing %q", er.Error, tc.errType, tc.status, tc.message)
			}
			if !strings.Contains(body, `"param":null`) {
				t.Errorf("vLLM sends param: null, body: %s", body)
			}
		})
	}
	if st := s.Stats(); st.Running != 0 || st.Waiting != 0 || st.KVBlocksUsed != 0 {
		t.Errorf("rejected requests left state behind: %+v", st)
	}
}

func TestModelsAndHealth(t *testing.T) {
	o := fastOptions()
	o.LoRAs = []string{"sql", "chat"}
	s := startServer(t, o)
	status, body := do(t, http.MethodGet, s.URL()+"/health", "")
	if status != 200 || body != "" {
		t.Errorf("/health = %d %q, want 200 and an empty body", status, body)
	}
	status, body = do(t, http.MethodGet, s.URL()+"/v1/models", "")
	if status != 200 {
		t.Fatalf("/v1/models status %d", status)
	}
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID, Object, OwnedBy string
			Parent              *string `json:"parent"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" {
			t.Errorf("%s object = %q", m.ID, m.Object)
		}
		if (m.ID == "m") != (m.Parent == nil) {
			t.Errorf("%s parent = %v: adapters name the base model, the base none", m.ID, m.Parent)
		}
	}
	if list.Object != "list" || !slices.Equal(ids, []string{"m", "sql", "chat"}) {
		t.Errorf("models = %s %v", list.Object, ids)
	}
	if status, _ := do(t, http.MethodGet, s.URL()+"/nowhere", ""); status != 404 {
		t.Errorf("unknown path status %d, want 404", status)
	}
}

type usageJSON struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

func checkUsage(t *testing.T, u usageJSON, prompt, completion, cached int) {
	t.Helper()
	if u.PromptTokensDetails == nil {
		t.Fatal("usage has no prompt_tokens_details")
	}
	if u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("total %d != prompt %d + completion %d", u.TotalTokens, u.PromptTokens, u.CompletionTokens)
	}
	if u.PromptTokens != prompt || u.CompletionTokens != completion || u.PromptTokensDetails.CachedTokens != cached {
		t.Errorf("usage = %d/%d cached %d, want %d/%d cached %d", u.PromptTokens, u.CompletionTokens,
			u.PromptTokensDetails.CachedTokens, prompt, completion, cached)
	}
}

func TestNonStreamingResponses(t *testing.T) {
	o := fastOptions()
	o.LoRAs, o.BlockSize, o.MaxTokensDefault = []string{"a"}, 4, 3
	s := startServer(t, o)
	prompt := strings.Repeat("abcd", 10) // 40 bytes = 10 tokens = 2 full blocks + partial
	tests := []struct {
		name, path, body string
		wantModel        string
		prompt, compl    int
		cached           int
		finish, text     string
	}{
		{"completion default max_tokens", "/v1/completions", `{"model":"m","prompt":"` + prompt + `"}`, "m", 10, 3, 0, "length", "The simulated model"},
		{"completion cached second time", "/v1/completions", `{"model":"m","prompt":"` + prompt + `","max_tokens":2}`, "m", 10, 2, 8, "length", "The simulated"},
		{"adapter has its own cache", "/v1/completions", `{"model":"a","prompt":"` + prompt + `","max_tokens":1}`, "a", 10, 1, 0, "length", "The"},
		{"empty model is the base model", "/v1/completions", `{"prompt":"` + prompt + `","max_tokens":1}`, "m", 10, 1, 8, "length", "The"},
		{"token id prompt", "/v1/completions", `{"model":"m","prompt":[1,2,3,4,5],"max_tokens":1}`, "m", 5, 1, 0, "length", "The"},
		{"stop string", "/v1/completions", `{"model":"m","prompt":"x","max_tokens":10,"stop":[" answers"]}`, "m", 1, 4, 0, "stop", "The simulated model"},
		{"chat max_completion_tokens wins", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hello"}]}],"max_completion_tokens":2,"max_tokens":9}`, "m", 3, 2, 0, "length", "The simulated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, s.URL()+tc.path, tc.body)
			if status != 200 {
				t.Fatalf("status %d: %s", status, body)
			}
			var resp struct {
				ID, Object, Model string
				Choices           []struct {
					Text         string `json:"text"`
					Message      struct{ Role, Content string }
					FinishReason string `json:"finish_reason"`
				}
				Usage usageJSON
			}
			if err := json.Unmarshal([]byte(body), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Model != tc.wantModel || len(resp.Choices) != 1 {
				t.Fatalf("model %q with %d choices: %s", resp.Model, len(resp.Choices), body)
			}
			text := resp.Choices[0].Text
			if tc.path == "/v1/chat/completions" {
				text = resp.Choices[0].Message.Content
				if resp.Object != "chat.completion" || resp.Choices[0].Message.Role != "assistant" || !strings.HasPrefix(resp.ID, "chatcmpl-") {
					t.Errorf("chat response shape: %s", body)
				}
			} else if resp.Object != "text_completion" || !strings.HasPrefix(resp.ID, "cmpl-") {
				t.Errorf("completion response shape: %s", body)
			}
			if text != tc.text || resp.Choices[0].FinishReason != tc.finish {
				t.Errorf("text %q finish %q, want %q %q", text, resp.Choices[0].FinishReason, tc.text, tc.finish)
			}
			checkUsage(t, resp.Usage, tc.prompt, tc.compl, tc.cached)
		})
	}
}

func TestEmbeddings(t *testing.T) {
	s := startServer(t, fastOptions())
	tests := []struct {
		name, body string
		n, dims    int
		prompt     int
	}{
		{"one string", `{"model":"m","input":"abcdefgh"}`, 1, defaultEmbeddingDims, 2},
		{"batch with dimensions", `{"model":"m","input":["abcd","efgh","ij"],"dimensions":8}`, 3, 8, 3},
		{"base64", `{"model":"m","input":"abcd","encoding_format":"base64","dimensions":4}`, 1, 4, 1},
		{"token ids", `{"model":"m","input":[[1,2],[3]]}`, 2, defaultEmbeddingDims, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, s.URL()+"/v1/embeddings", tc.body)
			if status != 200 {
				t.Fatalf("status %d: %s", status, body)
			}
			var resp struct {
				Object string
				Data   []struct {
					Index     int
					Object    string
					Embedding json.RawMessage
				}
				Usage usageJSON
			}
			if err := json.Unmarshal([]byte(body), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Object != "list" || len(resp.Data) != tc.n {
				t.Fatalf("object %q with %d items, want list of %d", resp.Object, len(resp.Data), tc.n)
			}
			for i, d := range resp.Data {
				if d.Index != i || d.Object != "embedding" {
					t.Errorf("item %d: index %d object %q", i, d.Index, d.Object)
				}
				dims := 0
				if strings.Contains(tc.body, "base64") {
					var b64 string
					if err := json.Unmarshal(d.Embedding, &b64); err != nil {
						t.Fatal(err)
					}
					raw, err := base64.StdEncoding.DecodeString(b64)
					if err != nil {
						t.Fatal(err)
					}
					dims = len(raw) / 4
				} else {
					var vec []float32
					if err := json.Unmarshal(d.Embedding, &vec); err != nil {
						t.Fatal(err)
					}
					dims = len(vec)
				}
				if dims != tc.dims {
					t.Errorf("item %d has %d dimensions, want %d", i, dims, tc.dims)
				}
			}
			checkUsage(t, resp.Usage, tc.prompt, 0, 0)
		})
	}
}

// TestRawStream checks the SSE framing a gateway parses: data lines, one JSON object
// each, a usage-only chunk (continuous usage on every chunk when asked), then [DONE].
func TestRawStream(t *testing.T) {
	s := startServer(t, fastOptions())
	body := `{"model":"m","prompt":"abcdefgh","max_tokens":4,"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}`
	resp := send(t, http.MethodPost, s.URL()+"/v1/completions", body)
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type = %q", ct)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line is not an SSE data line: %q", line)
		}
		events = append(events, data)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(events) != 6 || events[5] != "[DONE]" {
		t.Fatalf("got %d events ending %q, want 4 tokens, usage, [DONE]", len(events), events[len(events)-1])
	}
	var text strings.Builder
	for i, ev := range events[:5] {
		var c struct {
			Choices []struct {
				Text         string  `json:"text"`
				FinishReason *string `json:"finish_reason"`
			}
			Usage *usageJSON
		}
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("event %d is not JSON: %v", i, err)
		}
		if c.Usage == nil {
			t.Fatalf("event %d lacks continuous usage", i)
		}
		if i == 4 {
			if len(c.Choices) != 0 {
				t.Errorf("usage chunk has %d choices, want none", len(c.Choices))
			}
			checkUsage(t, *c.Usage, 2, 4, 0)
			continue
		}
		if c.Usage.CompletionTokens != i+1 {
			t.Errorf("event %d continuous usage completion_tokens = %d", i, c.Usage.CompletionTokens)
		}
		text.WriteString(c.Choices[0].Text)
		if last := i == 3; last != (c.Choices[0].FinishReason != nil) {
			t.Errorf("event %d finish_reason = %v", i, c.Choices[0].FinishReason)
		}
	}
	if text.String() != "The simulated model answers" {
		t.Errorf("streamed text %q", text.String())
	}
}

// TestOnRequestSeesTheAPIRequests: the hook sees each OpenAI API request
// with its headers before it is served, and not the scrapes.
func TestOnRequestSeesTheAPIRequests(t *testing.T) {
	seen := make(chan string, 4)
	opts := fastOptions()
	opts.OnRequest = func(r *http.Request) { seen <- r.Method + " " + r.URL.Path + " " + r.Header.Get("x-test") }
	s := startServer(t, opts)
	resp := postWith(t, s.URL()+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"x-test": "1"})
	resp.Body.Close()
	if got := receive(t, "the hook", seen); got != "POST /v1/chat/completions 1" {
		t.Fatalf("hook saw %q", got)
	}
	if code, _ := do(t, http.MethodGet, s.URL()+"/metrics", ""); code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	select {
	case got := <-seen:
		t.Fatalf("the hook saw a scrape: %q", got)
	default:
	}
}

// TestOnScrapeSeesOnlyTheScrapes: the scrape hook runs for GET /metrics
// and for nothing else.
func TestOnScrapeSeesOnlyTheScrapes(t *testing.T) {
	var scrapes atomic.Int64
	opts := fastOptions()
	opts.OnScrape = func() { scrapes.Add(1) }
	s := startServer(t, opts)
	resp := postWith(t, s.URL()+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, nil)
	resp.Body.Close()
	if n := scrapes.Load(); n != 0 {
		t.Fatalf("a chat request counted as %d scrapes", n)
	}
	for range 2 {
		if code, _ := do(t, http.MethodGet, s.URL()+"/metrics", ""); code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
	}
	if n := scrapes.Load(); n != 2 {
		t.Fatalf("2 scrapes, the hook saw %d", n)
	}
}
