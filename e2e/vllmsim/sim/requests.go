package sim

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// The request bodies are decoded into typed structs holding only the fields the
// simulator acts on; unknown fields are ignored, as vLLM does (it only logs them).

type streamOptions struct {
	IncludeUsage         *bool `json:"include_usage"` // vLLM defaults it to true once stream_options is sent
	ContinuousUsageStats bool  `json:"continuous_usage_stats"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// generationParams are the fields chat and completion requests share.
type generationParams struct {
	Model         string         `json:"model"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options"`
	MaxTokens     *int           `json:"max_tokens"`
	Stop          stopList       `json:"stop"`
	N             *int           `json:"n"`
	CacheSalt     string         `json:"cache_salt"`
}

type chatRequest struct {
	generationParams
	Messages            []chatMessage `json:"messages"`
	MaxCompletionTokens *int          `json:"max_completion_tokens"`
}

type completionRequest struct {
	generationParams
	Prompt json.RawMessage `json:"prompt"`
}

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
}

// stopList is the OpenAI "stop" field: a string or a list of strings.
type stopList []string

func (s *stopList) UnmarshalJSON(b []byte) error {
	switch {
	case bytes.Equal(b, []byte("null")):
		*s = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = stopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("stop must be a string or a list of strings")
	}
	*s = many
	return nil
}

// badRequest is a client error reported as a 400 BadRequestError.
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return badRequest{fmt.Sprintf(format, args...)} }

// decodeBody decodes body into v, turning syntax and type errors into 400s.
func decodeBody(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return badf("JSON decode error at offset %d: %v", se.Offset, se)
		}
		return badf("invalid request body: %v", err)
	}
	return nil
}

// chatPrompt serializes messages into the text the engine tokenizes and hashes: each
// message as "role\ncontent\n", so a conversation that grows by appending messages
// keeps its earlier blocks (and their cache hits), as a chat template does.
func chatPrompt(msgs []chatMessage) ([]byte, error) {
	if len(msgs) == 0 {
		return nil, badf("messages: Field required (a non-empty list)")
	}
	var buf bytes.Buffer
	for i, m := range msgs {
		if m.Role == "" {
			return nil, badf("messages[%d].role: Field required", i)
		}
		buf.WriteString(m.Role)
		buf.WriteByte('\n')
		if err := appendContent(&buf, m.Content); err != nil {
			return nil, badf("messages[%d].content: %v", i, err)
		}
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// appendContent writes a message content: a string, null, or a list of parts of which
// the text parts count (other parts, such as images, are not simulated).
func appendContent(buf *bytes.Buffer, raw json.RawMessage) error {
	return appendParts(buf, raw, "text")
}

// completionPrompt returns the text to tokenize for a /v1/completions prompt: a string,
// a one-element list of strings, or a list of token ids (each id stands for exactly one
// token, encoded as charsPerToken bytes so the block arithmetic stays exact).
func completionPrompt(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, badf("prompt: Field required")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, badf("prompt: %v", err)
		}
		return []byte(s), nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		if len(strs) != 1 {
			return nil, badf("prompt: vllmsim serves one prompt per request, got %d", len(strs))
		}
		return []byte(strs[0]), nil
	}
	var ids []int64
	if err := json.Unmarshal(raw, &ids); err != nil || len(ids) == 0 {
		return nil, badf("prompt: must be a string, a list with one string, or a non-empty list of token ids")
	}
	return tokenIDText(ids), nil
}

// embeddingInput returns the text of every input (strings, or token-id lists).
func embeddingInput(raw json.RawMessage) ([][]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, badf("input: Field required")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return [][]byte{[]byte(one)}, nil
	}
	var strs []string
	if json.Unmarshal(raw, &strs) == nil && len(strs) > 0 {
		out := make([][]byte, len(strs))
		for i, s := range strs {
			out[i] = []byte(s)
		}
		return out, nil
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		return [][]byte{tokenIDText(ids)}, nil
	}
	var batches [][]int64
	if json.Unmarshal(raw, &batches) == nil && len(batches) > 0 {
		out := make([][]byte, len(batches))
		for i, b := range batches {
			out[i] = tokenIDText(b)
		}
		return out, nil
	}
	return nil, badf("input: must be a string, a list of strings, or token ids")
}

func tokenIDText(ids []int64) []byte {
	out := make([]byte, 0, len(ids)*charsPerToken)
	for _, id := range ids {
		out = binary.LittleEndian.AppendUint32(out, uint32(id))
	}
	return out
}

// maxTokens resolves the completion length: the request's limit, else the default.
func maxTokens(limits []*int, def int) (int, error) {
	for _, l := range limits {
		if l == nil {
			continue
		}
		if *l < 1 {
			return 0, badf("max_tokens must be at least 1, got %d.", *l)
		}
		return *l, nil
	}
	return def, nil
}

// checkN rejects n > 1: the simulator produces one choice per request.
func checkN(n *int) error {
	if n != nil && *n != 1 {
		return badf("n: vllmsim produces exactly one choice, got n=%d", *n)
	}
	return nil
}

// usageFlags resolves stream_options the way vLLM does: rejected without stream,
// include_usage defaulting to true when the object is present.
func usageFlags(stream bool, so *streamOptions) (include, continuous bool, err error) {
	if so == nil {
		return false, false, nil
	}
	if !stream {
		return false, false, badf("Stream options can only be defined when `stream=True`.")
	}
	include = so.IncludeUsage == nil || *so.IncludeUsage
	return include, so.ContinuousUsageStats, nil
}
