package sim

import (
	"bytes"
	"encoding/json"
	"net/http"
)

// The Anthropic Messages API (POST /v1/messages), as vLLM serves it:
// max_tokens is required; one text content block; streamed as
// message_start (with the input usage), content_block_start, ping,
// content_block_delta per token, content_block_stop, message_delta (with
// the output usage) and message_stop. Usage follows Anthropic: input_tokens
// counts the prompt tokens not read from the prefix cache and
// cache_read_input_tokens those that were.

type messagesRequest struct {
	Model         string          `json:"model"`
	MaxTokens     *int            `json:"max_tokens"`
	System        json.RawMessage `json:"system"`
	Messages      []chatMessage   `json:"messages"`
	StopSequences []string        `json:"stop_sequences"`
	Stream        bool            `json:"stream"`
}

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) {
	var req messagesRequest
	served, lora, ok := s.parseRequest(w, r, &req)
	if !ok {
		return
	}
	if req.MaxTokens == nil {
		replyError(w, badf("max_tokens: Field required"))
		return
	}
	var sys bytes.Buffer
	if err := appendParts(&sys, req.System, "text"); err != nil {
		replyError(w, badf("system: %v", err))
		return
	}
	text, err := chatPrompt(req.Messages)
	if err != nil {
		replyError(w, err)
		return
	}
	if sys.Len() > 0 {
		text = append([]byte("system\n"+sys.String()+"\n"), text...)
	}
	n, err := maxTokens([]*int{req.MaxTokens}, s.opts.MaxTokensDefault)
	if err != nil {
		replyError(w, err)
		return
	}
	job := genJob{api: apiMessages, model: served, stream: req.Stream, stops: req.StopSequences}
	job.req = seqRequest{lora: lora, seed: served + "\x00", text: text, prompt: estimateTokens(len(text)), maxTokens: n}
	s.generate(w, r, job)
}

type anthropicUsage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

type textBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type anthropicMessage struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	Role         string          `json:"role"`
	Model        string          `json:"model"`
	Content      []textBlock     `json:"content"`
	StopReason   *string         `json:"stop_reason"`
	StopSequence *string         `json:"stop_sequence"`
	Usage        *anthropicUsage `json:"usage"`
}

type messagesOutput struct {
	streamWriter
	job genJob
	id  string
}

func (o *messagesOutput) message(u anthropicUsage) anthropicMessage {
	return anthropicMessage{ID: "msg_" + o.id, Type: "message", Role: "assistant", Model: o.job.model,
		Content: []textBlock{}, Usage: &u}
}

// stopReason maps vLLM's finish reason to Anthropic's.
func stopReason(reason string, stop *string) *string {
	r := "end_turn"
	switch {
	case reason == finishLength:
		r = "max_tokens"
	case stop != nil:
		r = "stop_sequence"
	}
	return &r
}

func (o *messagesOutput) startStream() {
	o.startSSE()
	// The prompt's usage is known once it is scheduled; like vLLM, the
	// opening event goes out with the first token.
}

func (o *messagesOutput) token(delta, _ string, _ *string, sq *seq) {
	if sq.generated == 1 {
		in := anthropicUsage{InputTokens: o.job.req.prompt - sq.cachedTokens, CacheReadInputTokens: sq.cachedTokens, OutputTokens: 0}
		o.event("message_start", map[string]any{"type": "message_start", "message": o.message(in)})
		o.event("content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": textBlock{Type: "text"}})
		o.rawEvent("ping", []byte(`{"type": "ping"}`))
	}
	o.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
		"delta": map[string]string{"type": "text_delta", "text": delta}})
}

func (o *messagesOutput) finishStream(u usageCounts, reason string, stop *string) {
	o.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
	o.event("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": stopReason(reason, stop), "stop_sequence": stop},
		"usage": map[string]int{"output_tokens": u.completion}})
	o.event("message_stop", map[string]any{"type": "message_stop"})
}

func (o *messagesOutput) whole(text, reason string, stop *string, u usageCounts) {
	m := o.message(anthropicUsage{InputTokens: u.prompt - u.cached, CacheReadInputTokens: u.cached, OutputTokens: u.completion})
	m.Content = []textBlock{{Type: "text", Text: text}}
	m.StopReason, m.StopSequence = stopReason(reason, stop), stop
	writeJSON(o.w, http.StatusOK, m)
}

// fail sends Anthropic's error event mid-stream.
func (o *messagesOutput) fail(err error) {
	if o.failedEarly(err) {
		return
	}
	o.event("error", map[string]any{"type": "error", "error": map[string]string{"type": "api_error", "message": err.Error()}})
}
