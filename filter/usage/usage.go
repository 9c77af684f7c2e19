// Package usage accounts the tokens of model-server responses as they pass
// through the gateway: it reads the usage a server reports in a JSON body
// or an SSE stream of any inference API the gateway routes (chat
// completions, completions, embeddings, the Responses API, Anthropic
// messages), incrementally, chunk by chunk, in one pass with a few
// kilobytes of state per response and no allocation per chunk. It can also
// remove the usage-only chunk of a chat or completions stream whose usage
// the gateway asked for on the client's behalf, and decode gzip or deflate
// bodies as a stream.
//
// Token types and their meaning are Envoy AI Gateway's (internal/metrics):
// input tokens include cached ones; for Anthropic messages input is
// input_tokens + cache_read_input_tokens + cache_creation_input_tokens.
//
// # What a failed stream is charged
//
// A stream that carries an error event, ends without ever reporting usage,
// or ends (or is cut off) before its terminal event (data: [DONE] for chat
// and completions, response.completed / response.incomplete /
// response.failed for the Responses API, message_stop for Anthropic) is
// recorded as failed with the usage last seen, and that usage is what is
// charged. Concretely: a chat or completions stream reports usage only in
// its final chunk (unless vLLM's continuous_usage_stats is on), so when it
// fails before that chunk it is charged nothing; an Anthropic stream is
// charged the input tokens of its message_start and the output of its last
// message_delta; a Responses stream is charged only by its terminal events.
// Nothing is guessed: an estimate would be charged to the client as if the
// server had reported it.
package usage

import "github.com/inflow-gateway/inflow/filter/request"

// Usage is the token count of one response, in Envoy AI Gateway's terms.
type Usage struct {
	Input              uint64
	Output             uint64
	Total              uint64
	CachedInput        uint64
	CacheCreationInput uint64
	Reasoning          uint64
	// Set says which fields the server reported (or, for Total, which
	// could be derived): metrics record only those.
	Set Fields
}

// Fields is a set of Usage fields.
type Fields uint8

const (
	FieldInput Fields = 1 << iota
	FieldOutput
	FieldTotal
	FieldCachedInput
	FieldCacheCreationInput
	FieldReasoning
)

// Has reports whether every field of f' is in f.
func (f Fields) Has(g Fields) bool { return f&g == g }

// Outcome is how a response ended, as far as its body tells.
type Outcome uint8

const (
	// Complete: the response reported usage and (for a stream) ended with
	// its terminal event.
	Complete Outcome = iota
	// NoUsage: the response ended normally but never reported usage.
	NoUsage
	// Truncated: the body ended, or was cut off, before its terminal event
	// (or before the JSON document closed).
	Truncated
	// ErrorEvent: the stream (or a 200 body) carried an error object.
	ErrorEvent
	// Undecodable: the body's content-encoding could not be decoded.
	Undecodable
)

var outcomeNames = [...]string{
	Complete:    "complete",
	NoUsage:     "no_usage",
	Truncated:   "truncated",
	ErrorEvent:  "error_event",
	Undecodable: "undecodable",
}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Failed reports whether the outcome counts as a failed request.
func (o Outcome) Failed() bool { return o != Complete }

// Result is what an Accountant learned from one response.
type Result struct {
	Usage   Usage
	Outcome Outcome
	// Model is the model the server says produced the response ("model" of
	// the body, of the first stream chunk that has one, or of the
	// Responses/Anthropic response object); empty when it said none.
	Model string
	// Stripped is true when the usage-only chunk was removed from what the
	// client receives.
	Stripped bool
}

// supportsStrip reports whether a kind's streams end with a usage-only
// chunk that can be asked for and removed.
func supportsStrip(k request.Kind) bool {
	return k == request.ChatCompletions || k == request.Completions
}
