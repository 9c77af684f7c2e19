package sim

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
)

// maxBodyBytes bounds a request body; far above any prompt the KV cache could hold.
const maxBodyBytes = 64 << 20

// defaultEmbeddingDims is the vector size when a request does not set dimensions.
const defaultEmbeddingDims = 64

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.handleChat)
	mux.HandleFunc("POST /v1/completions", s.handleCompletions)
	mux.HandleFunc("POST /v1/embeddings", s.handleEmbeddings)
	mux.HandleFunc("POST /v1/responses", s.handleResponses)
	mux.HandleFunc("POST /v1/messages", s.handleMessages)
	mux.HandleFunc("GET /v1/models", s.handleModels)
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("GET /admin/fault", s.handleGetFault)
	mux.HandleFunc("POST /admin/fault", s.handleSetFault)
	mux.HandleFunc("GET /admin/metrics", s.handleGetOverride)
	mux.HandleFunc("POST /admin/metrics", s.handleSetOverride)
	mux.HandleFunc("DELETE /admin/metrics", s.handleClearOverride)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not Found"}) // FastAPI's 404
	})
	if s.opts.OnRequest == nil && s.opts.OnScrape == nil {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.opts.OnRequest != nil && strings.HasPrefix(r.URL.Path, "/v1/"):
			s.opts.OnRequest(r)
		case s.opts.OnScrape != nil && r.Method == http.MethodGet && r.URL.Path == "/metrics":
			s.opts.OnScrape()
		}
		mux.ServeHTTP(w, r)
	})
}

// readBody reads a bounded request body, answering 400 itself on failure.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading request body: %v", err))
		return nil, false
	}
	return body, true
}

// resolveModel maps a request's model to (served name, adapter); an empty name means
// the base model, as in vLLM. ok is false for a name the server does not serve.
func (s *Server) resolveModel(name string) (served, lora string, ok bool) {
	switch {
	case name == "" || name == s.opts.Model:
		return s.opts.Model, "", true
	case slices.Contains(s.opts.LoRAs, name):
		return name, name, true
	}
	return name, "", false
}

// modelRequest is a request body that names a model.
type modelRequest interface{ modelName() string }

func (r *generationParams) modelName() string { return r.Model }
func (r *embeddingRequest) modelName() string { return r.Model }
func (r *responsesRequest) modelName() string { return r.Model }
func (r *messagesRequest) modelName() string  { return r.Model }

// parseRequest reads the body into req and resolves its model; ok is false
// when it has answered with an error.
func (s *Server) parseRequest(w http.ResponseWriter, r *http.Request, req modelRequest) (served, lora string, ok bool) {
	body, ok := readBody(w, r)
	if !ok {
		return "", "", false
	}
	if err := decodeBody(body, req); err != nil {
		replyError(w, err)
		return "", "", false
	}
	served, lora, ok = s.resolveModel(req.modelName())
	if !ok {
		modelNotFound(w, req.modelName())
	}
	return served, lora, ok
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	served, lora, ok := s.parseRequest(w, r, &req)
	if !ok {
		return
	}
	text, err := chatPrompt(req.Messages)
	if err != nil {
		replyError(w, err)
		return
	}
	s.submit(w, r, &req.generationParams, genJob{api: apiChat, model: served}, lora, text,
		[]*int{req.MaxCompletionTokens, req.MaxTokens})
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	served, lora, ok := s.parseRequest(w, r, &req)
	if !ok {
		return
	}
	text, err := completionPrompt(req.Prompt)
	if err != nil {
		replyError(w, err)
		return
	}
	s.submit(w, r, &req.generationParams, genJob{api: apiCompletions, model: served}, lora, text, []*int{req.MaxTokens})
}

// submit checks the generation options chat and completions share, then
// runs the request. maxTokenFields are the request's token limits, first
// set one wins.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, p *generationParams, job genJob, lora string, text []byte, maxTokenFields []*int) {
	job.stops, job.stream = p.Stop, p.Stream
	var err error
	if job.includeUsage, job.continuousUsage, err = usageFlags(p.Stream, p.StreamOptions); err != nil {
		replyError(w, err)
		return
	}
	n, err := maxTokens(maxTokenFields, s.opts.MaxTokensDefault)
	if err == nil {
		err = checkN(p.N)
	}
	if err != nil {
		replyError(w, err)
		return
	}
	job.req = seqRequest{lora: lora, seed: job.model + "\x00" + p.CacheSalt, text: text, prompt: estimateTokens(len(text)), maxTokens: n}
	s.generate(w, r, job)
}

// handleEmbeddings runs all inputs as one prefill-only sequence (they share one trip
// through the queue, as a batched request does) and returns deterministic unit vectors.
func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingRequest
	served, lora, ok := s.parseRequest(w, r, &req)
	if !ok {
		return
	}
	inputs, err := embeddingInput(req.Input)
	if err != nil {
		replyError(w, err)
		return
	}
	dims := defaultEmbeddingDims
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > 4096 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("dimensions must be in [1, 4096], got %d", *req.Dimensions))
			return
		}
		dims = *req.Dimensions
	}
	if req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("encoding_format must be float or base64, got %q", req.EncodingFormat))
		return
	}
	var text []byte
	prompt := 0
	for _, in := range inputs {
		text = append(text, in...)
		prompt += estimateTokens(len(in))
	}
	if limit := s.opts.KVBlocks * s.opts.BlockSize; prompt > limit {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("This model's maximum context length is %d tokens. However, you requested %d tokens in the input for embedding generation. Please reduce the length of the input.", limit, prompt))
		return
	}
	fe, handled := s.inferenceFault(w, r)
	if handled {
		return
	}
	if fe.failAfter > 0 {
		writeError(w, http.StatusInternalServerError, streamErrorMessage)
		return
	}
	if fe.resetAfter > 0 {
		resetConnection()
	}
	w, finishEncoding := s.encodeResponse(w, r)
	defer finishEncoding()
	sq, err := s.engine.admit(r.Context(), seqRequest{lora: lora, seed: served + "\x00", text: text, prompt: prompt, extraDelay: fe.extraDelay})
	if err != nil {
		if !clientGone(err) {
			replyError(w, err)
		}
		return
	}
	reason := finishAbort
	defer func() { sq.finish(reason) }()
	if _, err := sq.next(r.Context()); err != nil {
		return
	}
	reason = finishStop
	resp := embeddingResponse{
		ID: "embd-" + newID(), Object: "list", Created: time.Now().Unix(), Model: served,
		Usage: newUsage(prompt, 0, sq.cachedTokens),
	}
	for i, in := range inputs {
		vec := embed(in, dims)
		d := embeddingData{Index: i, Object: "embedding", Embedding: vec}
		if req.EncodingFormat == "base64" {
			raw := make([]byte, 0, 4*len(vec))
			for _, f := range vec {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
			}
			d.Embedding = base64.StdEncoding.EncodeToString(raw)
		}
		resp.Data = append(resp.Data, d)
	}
	writeJSON(w, http.StatusOK, resp)
}

// embed returns a unit vector seeded by the input's hash: equal inputs embed equally.
func embed(in []byte, dims int) []float32 {
	rng := rand.New(rand.NewPCG(xxhash.Sum64(in), 0x9e3779b97f4a7c15))
	vec := make([]float32, dims)
	var norm float64
	for i := range vec {
		v := rng.NormFloat64()
		vec[i] = float32(v)
		norm += v * v
	}
	norm = math.Sqrt(norm)
	for i := range vec {
		vec[i] = float32(float64(vec[i]) / norm)
	}
	return vec
}

// handleModels lists the base model and every loaded adapter, like vLLM's /v1/models.
func (s *Server) handleModels(w http.ResponseWriter, _ *http.Request) {
	maxLen := s.opts.KVBlocks * s.opts.BlockSize
	base := s.opts.Model
	list := modelList{Object: "list", Data: []modelCard{{
		ID: base, Object: "model", Created: s.started.Unix(), OwnedBy: "vllm", Root: base,
		MaxModelLen: &maxLen, Permission: []any{},
	}}}
	for _, l := range s.opts.LoRAs {
		list.Data = append(list.Data, modelCard{
			ID: l, Object: "model", Created: s.started.Unix(), OwnedBy: "vllm", Root: "/adapters/" + l,
			Parent: &base, Permission: []any{},
		})
	}
	writeJSON(w, http.StatusOK, list)
}

// handleHealth answers 200 with an empty body, as vLLM does while its engine is alive.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.endpointFault(w, r, s.Fault().Health) {
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if s.endpointFault(w, r, s.Fault().Metrics) {
		return
	}
	body := s.metrics.render(s.engine.snapshot(), time.Now())
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(body)
	s.scrapes.Add(1)
}

// newID returns 32 hex digits, the length of vLLM's random_uuid ids.
func newID() string {
	return fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
}
