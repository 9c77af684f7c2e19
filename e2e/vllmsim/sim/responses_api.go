package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
)

// The OpenAI Responses API (POST /v1/responses), as vLLM serves it: one
// message output item with one output_text part; streamed as the event
// sequence response.created, response.in_progress, output_item.added,
// content_part.added, output_text.delta per token, output_text.done,
// content_part.done, output_item.done and response.completed (or
// response.incomplete when max_output_tokens cut it), each "event: <type>"
// with a sequence_number; no [DONE] sentinel. Usage is input_tokens
// (cached ones included, in input_tokens_details.cached_tokens),
// output_tokens and total_tokens.

type responsesRequest struct {
	Model           string          `json:"model"`
	Input           json.RawMessage `json:"input"`
	Instructions    string          `json:"instructions"`
	MaxOutputTokens *int            `json:"max_output_tokens"`
	Stream          bool            `json:"stream"`
}

func (s *Server) handleResponses(w http.ResponseWriter, r *http.Request) {
	var req responsesRequest
	served, lora, ok := s.parseRequest(w, r, &req)
	if !ok {
		return
	}
	text, err := responsesPrompt(req.Instructions, req.Input)
	if err != nil {
		replyError(w, err)
		return
	}
	n, err := maxTokens([]*int{req.MaxOutputTokens}, s.opts.MaxTokensDefault)
	if err != nil {
		replyError(w, err)
		return
	}
	job := genJob{api: apiResponses, model: served, stream: req.Stream}
	job.req = seqRequest{lora: lora, seed: served + "\x00", text: text, prompt: estimateTokens(len(text)), maxTokens: n}
	s.generate(w, r, job)
}

// responsesPrompt serializes instructions and input (a string, or a list of
// messages whose content is a string or input_text parts) like a chat.
func responsesPrompt(instructions string, input json.RawMessage) ([]byte, error) {
	var buf bytes.Buffer
	if instructions != "" {
		buf.WriteString("system\n" + instructions + "\n")
	}
	input = bytes.TrimSpace(input)
	var one string
	switch {
	case len(input) == 0 || string(input) == "null":
		return nil, badf("input: Field required")
	case json.Unmarshal(input, &one) == nil:
		buf.WriteString("user\n" + one + "\n")
		return buf.Bytes(), nil
	}
	var items []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(input, &items); err != nil || len(items) == 0 {
		return nil, badf("input: must be a string or a non-empty list of messages")
	}
	for i, it := range items {
		buf.WriteString(it.Role + "\n")
		if err := appendParts(&buf, it.Content, "input_text"); err != nil {
			return nil, badf("input[%d].content: %v", i, err)
		}
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

type responsesUsage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

type outputText struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
}

type responseItem struct {
	ID      string       `json:"id"`
	Type    string       `json:"type"`
	Status  string       `json:"status"`
	Role    string       `json:"role"`
	Content []outputText `json:"content"`
}

type incompleteDetails struct {
	Reason string `json:"reason"`
}

type responseObject struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	CreatedAt         int64              `json:"created_at"`
	Status            string             `json:"status"`
	Error             any                `json:"error"`
	IncompleteDetails *incompleteDetails `json:"incomplete_details"`
	Model             string             `json:"model"`
	Output            []responseItem     `json:"output"`
	Usage             *responsesUsage    `json:"usage"`
}

type responsesOutput struct {
	streamWriter
	job     genJob
	id      string
	created int64
	seq     int
	text    []byte
}

func (o *responsesOutput) object(status string) responseObject {
	return responseObject{ID: "resp_" + o.id, Object: "response", CreatedAt: o.created, Status: status,
		Model: o.job.model, Output: []responseItem{}}
}

func (o *responsesOutput) item(status, text string) responseItem {
	return responseItem{ID: "msg_" + o.id, Type: "message", Status: status, Role: "assistant",
		Content: []outputText{{Type: "output_text", Text: text, Annotations: []any{}}}}
}

// send writes one streamed event with the next sequence number.
func (o *responsesOutput) send(typ string, fields map[string]any) {
	fields["type"], fields["sequence_number"] = typ, o.seq
	o.seq++
	o.event(typ, fields)
}

func (o *responsesOutput) startStream() {
	o.startSSE()
	o.send("response.created", map[string]any{"response": o.object("in_progress")})
	o.send("response.in_progress", map[string]any{"response": o.object("in_progress")})
	it := o.item("in_progress", "")
	it.Content = []outputText{}
	o.send("response.output_item.added", map[string]any{"output_index": 0, "item": it})
	o.send("response.content_part.added", map[string]any{"item_id": "msg_" + o.id, "output_index": 0, "content_index": 0,
		"part": outputText{Type: "output_text", Annotations: []any{}}})
}

func (o *responsesOutput) token(delta, _ string, _ *string, _ *seq) {
	o.text = append(o.text, delta...)
	o.send("response.output_text.delta", map[string]any{"item_id": "msg_" + o.id, "output_index": 0, "content_index": 0, "delta": delta})
}

func (o *responsesOutput) final(reason string, u usageCounts) responseObject {
	obj := o.object("completed")
	if reason == finishLength {
		obj.Status, obj.IncompleteDetails = "incomplete", &incompleteDetails{Reason: "max_output_tokens"}
	}
	obj.Output = []responseItem{o.item("completed", string(o.text))}
	ru := &responsesUsage{InputTokens: u.prompt, OutputTokens: u.completion, TotalTokens: u.prompt + u.completion}
	ru.InputTokensDetails.CachedTokens = u.cached
	obj.Usage = ru
	return obj
}

func (o *responsesOutput) finishStream(u usageCounts, reason string, _ *string) {
	text := string(o.text)
	o.send("response.output_text.done", map[string]any{"item_id": "msg_" + o.id, "output_index": 0, "content_index": 0, "text": text})
	o.send("response.content_part.done", map[string]any{"item_id": "msg_" + o.id, "output_index": 0, "content_index": 0,
		"part": outputText{Type: "output_text", Text: text, Annotations: []any{}}})
	o.send("response.output_item.done", map[string]any{"output_index": 0, "item": o.item("completed", text)})
	obj := o.final(reason, u)
	typ := "response.completed"
	if obj.Status == "incomplete" {
		typ = "response.incomplete"
	}
	o.send(typ, map[string]any{"response": obj})
}

func (o *responsesOutput) whole(text, reason string, _ *string, u usageCounts) {
	o.text = []byte(text)
	writeJSON(o.w, http.StatusOK, o.final(reason, u))
}

// fail sends the Responses API's error event mid-stream.
func (o *responsesOutput) fail(err error) {
	if o.failedEarly(err) {
		return
	}
	o.send("error", map[string]any{"code": "server_error", "message": err.Error(), "param": nil})
}

// appendParts writes a content value: a string, null, or a list of parts of
// which those of textType (and "text") count.
func appendParts(buf *bytes.Buffer, raw json.RawMessage, textType string) error {
	raw = bytes.TrimSpace(raw)
	var s string
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return nil
	case json.Unmarshal(raw, &s) == nil:
		buf.WriteString(s)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return fmt.Errorf("must be a string or a list of content parts")
	}
	for _, p := range parts {
		if p.Type == textType || p.Type == "text" {
			buf.WriteString(p.Text)
		}
	}
	return nil
}
