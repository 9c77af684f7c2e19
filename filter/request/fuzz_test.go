package request

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParse checks Parse against encoding/json on arbitrary bodies, for
// every kind of request.
func FuzzParse(f *testing.F) {
	for _, body := range corpus(f) {
		f.Add(uint8(ChatCompletions), body)
	}
	f.Add(uint8(Messages), []byte(`{"model":"m","system":"s","messages":[]}`))
	f.Add(uint8(Completions), []byte(`{"model":"m","prompt":[1,2]}`))
	f.Add(uint8(ChatCompletions), []byte(`{"model":"m","stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true}}`))
	f.Add(uint8(Completions), []byte(`{"stream_options":null,"model":"m","stream":true}`))
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		k := Kind(kind%uint8(Messages)) + 1
		checkAgainstOracle(t, k, body)
		checkUsageEdits(t, k, body)
	})
}

// checkUsageEdits: for a body Parse accepts that does not ask for usage,
// UsageEdits yields a body that does (as encoding/json, last key winning,
// reads it: stream_options.include_usage true, continuous_usage_stats not
// true) and is otherwise the same document: every other top-level member
// and stream_options member keeps its raw bytes.
func checkUsageEdits(t *testing.T, k Kind, body []byte) {
	var r Request
	if Parse(k, body, &r) != nil || r.AsksForUsage(body) {
		return
	}
	out := Apply(body, r.UsageEdits(body, nil)...)
	var r2 Request
	if err := Parse(k, out, &r2); err != nil || !r2.AsksForUsage(out) || !r2.IncludeUsage {
		t.Fatalf("edited body %q: parse %v, asks %v", out, err, r2.AsksForUsage(out))
	}
	var before, after map[string]json.RawMessage
	if json.Unmarshal(body, &before) != nil || json.Unmarshal(out, &after) != nil {
		t.Fatalf("edited body %q is not a JSON object", out)
	}
	var so map[string]json.RawMessage
	if err := json.Unmarshal(after["stream_options"], &so); err != nil || string(so["include_usage"]) != "true" || string(so["continuous_usage_stats"]) == "true" {
		t.Fatalf("edited stream_options %s", after["stream_options"])
	}
	for key, v := range before {
		if key != "stream_options" && !bytes.Equal(after[key], v) {
			t.Fatalf("member %q changed: %s -> %s", key, v, after[key])
		}
	}
	var oldSO map[string]json.RawMessage
	if json.Unmarshal(before["stream_options"], &oldSO) == nil {
		for key, v := range oldSO {
			if key != "include_usage" && key != "continuous_usage_stats" && !bytes.Equal(so[key], v) {
				t.Fatalf("stream_options member %q changed", key)
			}
		}
	}
}
