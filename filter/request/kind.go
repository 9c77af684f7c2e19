// Package request reads what the gateway needs from an inference request
// body in one pass, without decoding it into Go values: the top-level
// model, stream flags and the spans of prompt text the scheduler hashes.
// It accepts exactly the documents encoding/json accepts (and, like the
// Python model servers behind the gateway, also rejects invalid UTF-8).
package request

// Kind is the API an inference path belongs to; it decides which body
// fields hold the prompt.
type Kind uint8

const (
	ChatCompletions Kind = iota + 1
	Completions
	Embeddings
	Responses
	Messages // Anthropic
)

var kindNames = [...]string{
	ChatCompletions: "chat_completions",
	Completions:     "completions",
	Embeddings:      "embeddings",
	Responses:       "responses",
	Messages:        "messages",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// PathOnly is an HTTP :path without its query string or fragment.
func PathOnly(path string) string {
	for i := 0; i < len(path); i++ {
		if path[i] == '?' || path[i] == '#' {
			return path[:i]
		}
	}
	return path
}

// KindForPath maps a request path (query string allowed) to its Kind.
func KindForPath(path string) (Kind, bool) {
	switch PathOnly(path) {
	case "/v1/chat/completions":
		return ChatCompletions, true
	case "/v1/completions":
		return Completions, true
	case "/v1/embeddings":
		return Embeddings, true
	case "/v1/responses":
		return Responses, true
	case "/v1/messages":
		return Messages, true
	}
	return 0, false
}
