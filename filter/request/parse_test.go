package request

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseCorpusAgreesWithEncodingJSON(t *testing.T) {
	kinds := map[string]Kind{
		"anthropic_messages": Messages, "completions": Completions, "embeddings": Embeddings,
		"responses": Responses,
	}
	for name, body := range corpus(t) {
		t.Run(name, func(t *testing.T) {
			kind, ok := kinds[name]
			if !ok {
				kind = ChatCompletions
			}
			checkAgainstOracle(t, kind, body)
			var r Request
			if err := Parse(kind, body, &r); err != nil {
				t.Fatalf("corpus body must parse: %v", err)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, body string
		kind       Kind
		wantModel  string
		wantErr    error
		stream     bool
		usage      bool
		prompt     [2]string
	}{
		{name: "plain", body: `{"model":"m","messages":[]}`, wantModel: "m", prompt: [2]string{"", "[]"}},
		{name: "whitespace everywhere", body: " \t\r\n{ \"model\" :\n\"m\" , \"messages\" : [ ] }\n", wantModel: "m", prompt: [2]string{"", "[ ]"}},
		{name: "escaped key", body: `{"mo\u0064el":"m"}`, wantModel: "m"},
		{name: "escaped value", body: `{"model":"a\/b\"c\\d\u00e9\ud83d\ude80"}`, wantModel: "a/b\"c\\dé🚀"},
		{name: "lone surrogate becomes U+FFFD", body: `{"model":"x\ud800y"}`, wantModel: "x\uFFFDy"},
		{name: "unicode model", body: `{"model":"模型-ä"}`, wantModel: "模型-ä"},
		{name: "last duplicate wins", body: `{"model":"a","model":"b"}`, wantModel: "b"},
		{name: "later string replaces number", body: `{"model":1,"model":"b"}`, wantModel: "b"},
		{name: "later number replaces string", body: `{"model":"a","model":1}`, wantErr: ErrModelNotString},
		{name: "nested model ignored", body: `{"messages":[{"model":"inner"}],"tools":[{"function":{"model":"t"}}],"model":"outer"}`, wantModel: "outer", prompt: [2]string{"", `[{"model":"inner"}]`}},
		{name: "keys are case-sensitive", body: `{"Model":"x","MODEL":"y"}`, wantErr: ErrMissingModel},
		{name: "missing", body: `{"messages":[]}`, wantErr: ErrMissingModel},
		{name: "empty object", body: `{}`, wantErr: ErrMissingModel},
		{name: "null model", body: `{"model":null}`, wantErr: ErrModelNotString},
		{name: "object model", body: `{"model":{"name":"m"}}`, wantErr: ErrModelNotString},
		{name: "array top level", body: `[{"model":"m"}]`, wantErr: ErrNotObject},
		{name: "string top level", body: `"model"`, wantErr: ErrNotObject},
		{name: "empty body", body: ``, wantErr: ErrInvalidJSON},
		{name: "trailing comma", body: `{"model":"m",}`, wantErr: ErrInvalidJSON},
		{name: "trailing data", body: `{"model":"m"} {}`, wantErr: ErrInvalidJSON},
		{name: "single quotes", body: `{'model':'m'}`, wantErr: ErrInvalidJSON},
		{name: "NaN", body: `{"model":"m","temperature":NaN}`, wantErr: ErrInvalidJSON},
		{name: "leading zero", body: `{"model":"m","n":01}`, wantErr: ErrInvalidJSON},
		{name: "raw newline in string", body: "{\"model\":\"m\n\"}", wantErr: ErrInvalidJSON},
		{name: "bad escape", body: `{"model":"\x"}`, wantErr: ErrInvalidJSON},
		{name: "short unicode escape", body: `{"model":"\u12"}`, wantErr: ErrInvalidJSON},
		{name: "invalid UTF-8", body: "{\"model\":\"m\xff\"}", wantErr: ErrInvalidJSON},
		{name: "BOM", body: "\xef\xbb\xbf{\"model\":\"m\"}", wantErr: ErrInvalidJSON},
		{name: "unclosed", body: `{"model":"m","messages":[`, wantErr: ErrInvalidJSON},
		{name: "stream true", body: `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`, wantModel: "m", stream: true, usage: true},
		{name: "stream string is not true", body: `{"model":"m","stream":"true"}`, wantModel: "m"},
		{name: "stream last wins", body: `{"stream":true,"model":"m","stream":false}`, wantModel: "m"},
		{name: "include_usage last wins", body: `{"model":"m","stream_options":{"include_usage":true,"include_usage":false}}`, wantModel: "m"},
		{name: "stream_options replaced", body: `{"model":"m","stream_options":{"include_usage":true},"stream_options":null}`, wantModel: "m"},
		{name: "escaped include_usage", body: `{"model":"m","stream_options":{"include_\u0075sage":true}}`, wantModel: "m", usage: true},
		{name: "anthropic system and messages", kind: Messages, body: `{"model":"c","system":"be nice","messages":[1]}`, wantModel: "c", prompt: [2]string{`"be nice"`, `[1]`}},
		{name: "completions prompt", kind: Completions, body: `{"model":"c","prompt":"once upon","messages":[1]}`, wantModel: "c", prompt: [2]string{"", `"once upon"`}},
		{name: "responses instructions and input", kind: Responses, body: `{"model":"c","instructions":"x","input":"y"}`, wantModel: "c", prompt: [2]string{`"x"`, `"y"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind := tt.kind
			if kind == 0 {
				kind = ChatCompletions
			}
			var r Request
			err := Parse(kind, []byte(tt.body), &r)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			checkAgainstOracle(t, kind, []byte(tt.body))
			if tt.wantErr != nil {
				return
			}
			if string(r.Model) != tt.wantModel || r.Stream != tt.stream || r.IncludeUsage != tt.usage {
				t.Fatalf("got model %q stream %v usage %v", r.Model, r.Stream, r.IncludeUsage)
			}
			for i, want := range tt.prompt {
				if got := string(r.PromptBytes([]byte(tt.body), i)); got != want {
					t.Errorf("prompt[%d] = %q, want %q", i, got, want)
				}
			}
		})
	}
}

func TestNestingDepthMatchesEncodingJSON(t *testing.T) {
	for _, depth := range []int{9998, 9999, 10000} {
		// The top-level object is one level; the "x" value adds depth more.
		body := `{"model":"m","x":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
		checkAgainstOracle(t, ChatCompletions, []byte(body))
	}
}

func TestSyntaxErrorDoesNotQuoteBody(t *testing.T) {
	var r Request
	err := Parse(ChatCompletions, []byte(`{"model":"secret-prompt-text" oops}`), &r)
	var se *SyntaxError
	if !errors.As(err, &se) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %v must be a SyntaxError without body text", err)
	}
}

func TestRewriteModel(t *testing.T) {
	body := []byte(`{"model":"first","messages":[{"content":"hi","model":"nested"}],"model" : "client"}`)
	var r Request
	if err := Parse(ChatCompletions, body, &r); err != nil {
		t.Fatal(err)
	}
	quoted, err := json.Marshal("served-\"name\"")
	if err != nil {
		t.Fatal(err)
	}
	out := RewriteModel(body, &r, quoted)
	var got map[string]json.RawMessage
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("rewritten body invalid: %v", err)
	}
	var model string
	if err := json.Unmarshal(got["model"], &model); err != nil || model != `served-"name"` {
		t.Fatalf("model after rewrite = %q (%v)", model, err)
	}
	if string(got["messages"]) != `[{"content":"hi","model":"nested"}]` {
		t.Fatalf("messages changed: %s", got["messages"])
	}
	if string(body) != `{"model":"first","messages":[{"content":"hi","model":"nested"}],"model" : "client"}` {
		t.Fatal("RewriteModel modified its input")
	}
}

func TestUsageEdits(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"model":"m","stream":true}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`},
		{`{"model":"m","stream":true,"stream_options":null }`, `{"model":"m","stream":true,"stream_options":{"include_usage":true} }`},
		{`{"model":"m","stream_options":{"include_usage":false,"x":1}}`, `{"model":"m","stream_options":{"include_usage":true,"x":1}}`},
		{`{"model":"m","stream_options":{"include_usage":null,"continuous_usage_stats":true}}`, `{"model":"m","stream_options":{"include_usage":true,"continuous_usage_stats":false}}`},
		{`{"stream_options":{"include_usage":true},"model":"m","stream_options":{"include_usage":false}}`, `{"stream_options":{"include_usage":true},"model":"m","stream_options":{"include_usage":true}}`},
		{`{"model":"m","stream_options":{"include_usage":true}}`, ""},
		{`{"model":"m","stream_options":{}}`, ""}, // vLLM: include_usage defaults to true
	} {
		var r Request
		if err := Parse(ChatCompletions, []byte(tc.body), &r); err != nil {
			t.Fatal(err)
		}
		if r.AsksForUsage([]byte(tc.body)) != (tc.want == "") {
			t.Errorf("%s: AsksForUsage = %v", tc.body, !(tc.want == ""))
			continue
		}
		if tc.want == "" {
			continue
		}
		if got := string(Apply([]byte(tc.body), r.UsageEdits([]byte(tc.body), nil)...)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.body, got, tc.want)
		}
		checkUsageEdits(t, ChatCompletions, []byte(tc.body))
	}
}

func TestKindForPath(t *testing.T) {
	tests := map[string]Kind{
		"/v1/chat/completions": ChatCompletions, "/v1/completions?x=1": Completions,
		"/v1/embeddings": Embeddings, "/v1/responses": Responses, "/v1/messages": Messages,
		"/v1/models": 0, "/v1/chat/completions/": 0, "/V1/completions": 0,
	}
	for path, want := range tests {
		got, ok := KindForPath(path)
		if got != want || ok != (want != 0) {
			t.Errorf("KindForPath(%q) = %v, %v", path, got, ok)
		}
	}
}

// Pieces prepended to the tail after End give what Apply gives, for the
// edits the router makes: the model alone, the model and the usage edits,
// an insertion at the end.
func TestEditsPiecesMatchApply(t *testing.T) {
	bodies := []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`,
		`{"messages":[{"role":"user","content":"hi"}],"stream":true,"model":"m"}`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true}}`,
		`{"model":"m","stream":true,"stream_options":null}`,
	}
	for _, body := range bodies {
		b := []byte(body)
		var r Request
		if err := Parse(ChatCompletions, b, &r); err != nil {
			t.Fatal(err)
		}
		for _, withModel := range []bool{false, true} {
			var list []Edit
			if withModel {
				list = append(list, ModelEdit(&r, []byte(`"a-much-longer-model-name"`)))
			}
			list = r.UsageEdits(b, list)
			e := NewEdits(list)
			want := string(Apply(b, list...))
			tail := string(b[e.End():])
			var prefix string
			if err := e.Pieces(b, func(p []byte) error {
				if len(p) == 0 {
					t.Fatal("empty piece")
				}
				prefix = string(p) + prefix
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if got := prefix + tail; got != want || e.Size(len(b)) != len(want) {
				t.Errorf("%s (model %v): pieces give %s (size %d), want %s", body, withModel, got, e.Size(len(b)), want)
			}
		}
	}
}
