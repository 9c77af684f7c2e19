package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Recorded is one request a Backend received.
type Recorded struct {
	Method, Path string
	Host         string // the request's Host (HTTP/1 host header)
	Header       http.Header
	Trailer      http.Header
	Body         []byte
	Model        string // the "model" field of a JSON body
}

// Backend is a fake OpenAI-compatible model server on a loopback port. It
// records what it receives and answers chat and completions requests, as
// JSON or as an SSE stream.
type Backend struct {
	Name string
	Addr string // ip:port, what pool endpoints name
	// Gate, if set, holds a stream between its first and second chunk until
	// it is closed, so a test can check the first chunk got through alone.
	Gate chan struct{}
	// NoRecord skips recording (for load tests).
	NoRecord bool
	// HangOn, if set, makes a request whose body contains it wait until
	// its client (the host) goes away; Cancelled counts those.
	HangOn string
	// Status, if set, answers every request with it (an OpenAI-shaped error).
	Status int
	// MetricsDown makes /metrics answer 503 (a server whose metrics endpoint
	// went away), so the filter keeps only what it scraped before.
	MetricsDown atomic.Bool

	srv       *http.Server
	ln        net.Listener
	mu        sync.Mutex
	reqs      []Recorded
	scrapes   atomic.Int64
	served    atomic.Int64
	cancelled atomic.Int64
}

// Cancelled counts HangOn requests whose upstream connection went away.
func (b *Backend) Cancelled() int64 { return b.cancelled.Load() }

// metricsText is an idle vLLM server's /metrics, which Inflow's scheduler
// scrapes from every pool endpoint.
const metricsText = `# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="llama-3-8b"} 0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="llama-3-8b"} 0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="llama-3-8b"} 0
`

// Served counts the requests other than scrapes, recorded or not.
func (b *Backend) Served() int64 { return b.served.Load() }

// Scrapes counts GET /metrics requests, which are not recorded.
func (b *Backend) Scrapes() int64 { return b.scrapes.Load() }

// gateTimeout bounds how long a gated stream waits, so a broken test cannot hang.
const gateTimeout = 20 * time.Second

// StartBackend listens on 127.0.0.1:0 and serves until Close.
func StartBackend(name string) (*Backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Backend{Name: name, Addr: ln.Addr().String(), ln: ln}
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

// Close stops the server.
func (b *Backend) Close() { _ = b.srv.Close() }

// Requests returns a copy of what was received so far.
func (b *Backend) Requests() []Recorded {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Recorded(nil), b.reqs...)
}

func (b *Backend) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/metrics" {
		// scraped in the background: not traffic the tests route
		b.scrapes.Add(1)
		if b.MetricsDown.Load() {
			http.Error(w, "metrics unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("content-type", "text/plain; version=0.0.4")
		fmt.Fprint(w, metricsText)
		return
	}
	b.served.Add(1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var in struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	_ = json.Unmarshal(body, &in)
	if !b.NoRecord {
		b.mu.Lock()
		b.reqs = append(b.reqs, Recorded{Method: r.Method, Path: r.URL.Path, Host: r.Host, Header: r.Header.Clone(), Trailer: r.Trailer.Clone(), Body: body, Model: in.Model})
		b.mu.Unlock()
	}
	w.Header().Set("x-backend", b.Name)
	if b.HangOn != "" && bytes.Contains(body, []byte(b.HangOn)) {
		select {
		case <-r.Context().Done():
			b.cancelled.Add(1)
		case <-time.After(gateTimeout):
		}
		return
	}
	if b.Status != 0 {
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(b.Status)
		fmt.Fprintf(w, `{"error":{"message":"backend %s answers %d","type":"server_error","param":null,"code":null}}`, b.Name, b.Status)
		return
	}
	chat := r.URL.Path == "/v1/chat/completions"
	if r.URL.Path != "/v1/completions" && !chat {
		w.Header().Set("content-type", "text/plain")
		fmt.Fprintf(w, "%s %s", b.Name, r.URL.Path)
		return
	}
	if in.Stream {
		b.stream(w, in.Model, chat)
		return
	}
	w.Header().Set("content-type", "application/json")
	text := "hello from " + b.Name
	if chat {
		fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`, in.Model, text)
	} else {
		fmt.Fprintf(w, `{"id":"c1","object":"text_completion","created":1,"model":%q,"choices":[{"index":0,"text":%q,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`, in.Model, text)
	}
}

// StreamChunks are the pieces of text a stream delivers, one SSE event each.
var StreamChunks = []string{"Hel", "lo"}

func (b *Backend) stream(w http.ResponseWriter, model string, chat bool) {
	w.Header().Set("content-type", "text/event-stream")
	flusher, _ := w.(http.Flusher)
	for i, piece := range StreamChunks {
		if i == 1 && b.Gate != nil {
			select {
			case <-b.Gate:
			case <-time.After(gateTimeout):
			}
		}
		if chat {
			fmt.Fprintf(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", model, piece)
		} else {
			fmt.Fprintf(w, "data: {\"id\":\"c1\",\"object\":\"text_completion\",\"created\":1,\"model\":%q,\"choices\":[{\"index\":0,\"text\":%q,\"finish_reason\":null}]}\n\n", model, piece)
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}
