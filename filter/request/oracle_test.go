package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// oracle reads body the way the truth does: encoding/json into a map
// (case-sensitive keys, last duplicate wins), plus the UTF-8 check Python's
// json.loads(bytes) makes.
type oracleResult struct {
	err          error // nil, or one of the sentinel errors
	model        string
	stream       bool
	includeUsage bool
	prompt       [2][]byte
}

func oracle(kind Kind, body []byte) oracleResult {
	if !utf8.Valid(body) {
		return oracleResult{err: ErrInvalidJSON}
	}
	var top any
	if err := json.Unmarshal(body, &top); err != nil {
		return oracleResult{err: ErrInvalidJSON}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return oracleResult{err: ErrNotObject}
	}
	var res oracleResult
	raw, ok := m["model"]
	switch {
	case !ok:
		res.err = ErrMissingModel
	case raw[0] != '"':
		res.err = ErrModelNotString
	default:
		if err := json.Unmarshal(raw, &res.model); err != nil {
			panic(err)
		}
	}
	res.stream = string(m["stream"]) == "true"
	if opts := m["stream_options"]; len(opts) > 0 && opts[0] == '{' {
		var o map[string]json.RawMessage
		if err := json.Unmarshal(opts, &o); err != nil {
			panic(err)
		}
		res.includeUsage = string(o["include_usage"]) == "true"
	}
	for key, slot := range promptKeys(kind) {
		if key != "" {
			res.prompt[slot] = m[key]
		}
	}
	return res
}

func promptKeys(kind Kind) map[string]int {
	switch kind {
	case ChatCompletions:
		return map[string]int{"messages": 1}
	case Completions:
		return map[string]int{"prompt": 1}
	case Embeddings:
		return map[string]int{"input": 1}
	case Responses:
		return map[string]int{"instructions": 0, "input": 1}
	case Messages:
		return map[string]int{"system": 0, "messages": 1}
	}
	return nil
}

// checkAgainstOracle fails t when Parse and the oracle disagree on body.
func checkAgainstOracle(t *testing.T, kind Kind, body []byte) {
	t.Helper()
	want := oracle(kind, body)
	var r Request
	err := Parse(kind, body, &r)
	if want.err != nil {
		if !errors.Is(err, want.err) {
			t.Fatalf("Parse error = %v, want %v", err, want.err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Parse error = %v, want success (model %q)", err, want.model)
	}
	if string(r.Model) != want.model {
		t.Fatalf("model = %q, want %q", r.Model, want.model)
	}
	if r.Stream != want.stream || r.IncludeUsage != want.includeUsage {
		t.Fatalf("stream, include_usage = %v, %v; want %v, %v", r.Stream, r.IncludeUsage, want.stream, want.includeUsage)
	}
	for i := range want.prompt {
		if got := r.PromptBytes(body, i); !bytes.Equal(got, want.prompt[i]) {
			t.Fatalf("prompt[%d] = %.40q..., want %.40q...", i, got, want.prompt[i])
		}
	}
}

// corpus returns the testdata bodies plus generated large ones.
func corpus(tb testing.TB) map[string][]byte {
	tb.Helper()
	files, err := filepath.Glob("testdata/bodies/*.json")
	if err != nil || len(files) == 0 {
		tb.Fatalf("no testdata bodies: %v", err)
	}
	out := make(map[string][]byte, len(files)+1)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = b
	}
	out["chat_1mib_prompt"] = chatBody(1<<20, "llama")
	return out
}

// chatBody builds a multi-turn chat request of about size bytes, shaped
// like real traffic (a long system prompt, turns of a few hundred to a few
// thousand bytes with some non-ASCII text, the last turn holding the rest),
// with the "model" key last so a parser cannot stop early.
func chatBody(size int, model string) []byte {
	const sentence = `The prefix cache keeps KV blocks of earlier prompts, so a shared system prompt is cheap; café, naïve, 日本語 and \"quoted\" text appear too.\n`
	var b bytes.Buffer
	b.WriteString(`{"messages":[`)
	writeTurn := func(role string, n int) {
		b.WriteString(`{"role":"` + role + `","content":"`)
		for end := b.Len() + n; b.Len() < end; {
			b.WriteString(sentence)
		}
		b.WriteString(`"},`)
	}
	const tail = len(`{"role":"user","content":""}],"stream":false,"model":""}`)
	budget := size - tail - len(model)
	writeTurn("system", min(2048, budget/4))
	for turn := 0; b.Len() < budget*3/4; turn++ {
		role := [...]string{"user", "assistant"}[turn%2]
		writeTurn(role, 300+(turn*701)%1700)
	}
	b.WriteString(`{"role":"user","content":"`)
	for b.Len() < budget-len(sentence) {
		b.WriteString(sentence)
	}
	b.WriteString(`"}],"stream":false,"model":"` + model + `"}`)
	return b.Bytes()
}
