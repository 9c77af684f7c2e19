package usage

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/inflow-gateway/inflow/filter/request"
)

// account feeds body in the given pieces and returns the result and what
// the client received.
func account(kind request.Kind, format Format, strip bool, pieces [][]byte, complete bool) (Result, []byte) {
	var a Accountant
	a.Reset(kind, format, strip)
	var client []byte
	for i, p := range pieces {
		// The caller's buffer is reused after each call, as Envoy's is.
		in := bytes.Clone(p)
		out, _ := a.Filter(in, complete && i == len(pieces)-1)
		client = append(client, out...)
		clear(in)
	}
	if len(pieces) == 0 && complete {
		out, _ := a.Filter(nil, true)
		client = append(client, out...)
	}
	return a.Finish(complete), client
}

// split cuts body at the given offsets.
func split(body []byte, cuts []int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range cuts {
		if c > prev && c < len(body) {
			out = append(out, body[prev:c])
			prev = c
		}
	}
	return append(out, body[prev:])
}

func TestShapes(t *testing.T) {
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			complete := sh.outcome != Truncated || sh.format == JSON
			got, client := account(sh.kind, sh.format, false, [][]byte{[]byte(sh.body)}, complete)
			if got.Usage != sh.want {
				t.Errorf("usage = %+v, want %+v", got.Usage, sh.want)
			}
			if got.Outcome != sh.outcome {
				t.Errorf("outcome = %v, want %v", got.Outcome, sh.outcome)
			}
			if got.Model != sh.model {
				t.Errorf("model = %q, want %q", got.Model, sh.model)
			}
			if string(client) != sh.body {
				t.Errorf("without strip the body must pass unchanged")
			}
			// Byte by byte gives the same.
			cuts := make([]int, len(sh.body))
			for i := range cuts {
				cuts[i] = i
			}
			again, _ := account(sh.kind, sh.format, false, split([]byte(sh.body), cuts), complete)
			if again != got {
				t.Errorf("byte by byte: %+v, whole: %+v", again, got)
			}
		})
	}
}

// A stream that ends without its final event (the connection was reset)
// is truncated even when the bytes so far were well formed.
func TestCutOff(t *testing.T) {
	got, _ := account(request.ChatCompletions, SSE, false, [][]byte{[]byte(chatStream)}, false)
	if got.Outcome != Truncated || got.Usage.Input != 12 {
		t.Errorf("cut-off stream: %+v, want truncated with the usage seen", got)
	}
}

func TestStripRemovesOnlyTheUsageChunk(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
		kind             request.Kind
	}{
		{"chat", chatStream, chatStreamNoUsage + "data: [DONE]\n\n", request.ChatCompletions},
		{"chat CRLF", strings.ReplaceAll(chatStream, "\n", "\r\n"), strings.ReplaceAll(chatStreamNoUsage+"data: [DONE]\n\n", "\n", "\r\n"), request.ChatCompletions},
		{"chat CR", strings.ReplaceAll(chatStream, "\n", "\r"), strings.ReplaceAll(chatStreamNoUsage+"data: [DONE]\n\n", "\n", "\r"), request.ChatCompletions},
		{"completions", completionsStream, strings.Replace(completionsStream, completionsStream[strings.Index(completionsStream, "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"llama\",\"choices\":[],"):strings.Index(completionsStream, "data: [DONE]")], "", 1), request.Completions},
		{"comment before the usage chunk stays", chatStreamNoUsage + ": ping\n\n" + usageEvent + "data: [DONE]\n\n", chatStreamNoUsage + ": ping\n\n" + "data: [DONE]\n\n", request.ChatCompletions},
		{"an empty choices without usage stays", chatStreamNoUsage + "data: {\"choices\":[]}\n\ndata: [DONE]\n\n", chatStreamNoUsage + "data: {\"choices\":[]}\n\ndata: [DONE]\n\n", request.ChatCompletions},
		{"error stream unchanged", midStreamError, midStreamError, request.ChatCompletions},
		{"responses never stripped", responsesStream, responsesStream, request.Responses},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			whole, client := account(tc.kind, SSE, true, [][]byte{body}, true)
			if string(client) != tc.want {
				t.Fatalf("client got\n%q\nwant\n%q", client, tc.want)
			}
			if whole.Stripped != (tc.body != tc.want) {
				t.Errorf("Stripped = %v", whole.Stripped)
			}
			// Every single cut point, and every pair in a small window
			// around the usage chunk, gives the same bytes and totals.
			for c := 0; c <= len(body); c++ {
				got, client := account(tc.kind, SSE, true, split(body, []int{c}), true)
				if string(client) != tc.want || got != whole {
					t.Fatalf("cut at %d: client %q, result %+v (whole %+v)", c, client, got, whole)
				}
			}
			r := rand.New(rand.NewPCG(1, 2))
			for range 300 {
				cuts := []int{r.IntN(len(body)), r.IntN(len(body)), r.IntN(len(body))}
				slicesSort(cuts)
				got, client := account(tc.kind, SSE, true, split(body, cuts), true)
				if string(client) != tc.want || got != whole {
					t.Fatalf("cuts %v: client %q, result %+v", cuts, client, got)
				}
			}
		})
	}
}

// Only what could be the usage chunk is held back, and only until it is
// known not to be: a content chunk split before its choices passes on with
// the next piece, one split after them passes on at once.
func TestStripHoldsAtMostAPartialEvent(t *testing.T) {
	var a Accountant
	a.Reset(request.ChatCompletions, SSE, true)
	chunk := chatChunk("hello")
	mid := strings.Index(chunk, "\"choices\":[{") + len("\"choices\":[{")
	out, changed := a.Filter([]byte(chunk[:mid]), false)
	if changed || string(out) != chunk[:mid] {
		t.Fatalf("a piece that reaches into a non-empty choices passes on untouched: changed %v, %q", changed, out)
	}
	early := strings.Index(chunk, "\"model\"")
	a.Reset(request.ChatCompletions, SSE, true)
	out, _ = a.Filter([]byte(chunk[:early]), false)
	if len(out) != 0 {
		t.Fatalf("a piece before choices is held: passed %q", out)
	}
	out, _ = a.Filter([]byte(chunk[early:]), false)
	if string(out) != chunk {
		t.Fatalf("held bytes come with the next piece: %q", out)
	}
	out, changed = a.Filter([]byte(chunk), false)
	if changed || string(out) != chunk {
		t.Fatalf("whole events pass on untouched: changed %v", changed)
	}
}

func slicesSort(s []int) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
