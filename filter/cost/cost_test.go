package cost

import (
	"strings"
	"testing"
)

var vars = Vars{Model: "llama", Backend: "pool-a", Input: 100, CachedInput: 40, CacheCreationInput: 5, Output: 20, Total: 120, Reasoning: 7}

func TestEval(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		want uint64
	}{
		{Spec{MetadataKey: "in", Type: InputToken}, 100},
		{Spec{MetadataKey: "cached", Type: CachedInputToken}, 40},
		{Spec{MetadataKey: "creation", Type: CacheCreationInputToken}, 5},
		{Spec{MetadataKey: "out", Type: OutputToken}, 20},
		{Spec{MetadataKey: "total", Type: TotalToken}, 120},
		{Spec{MetadataKey: "reasoning", Type: ReasoningToken}, 7},
		{Spec{MetadataKey: "weighted", Type: CEL, CEL: "input_tokens - cached_input_tokens + cached_input_tokens / 10u + output_tokens * 4u"}, 100 - 40 + 4 + 80},
		{Spec{MetadataKey: "per-model", Type: CEL, CEL: `model == "llama" && backend == "pool-a" ? total_tokens : 0u`}, 120},
		{Spec{MetadataKey: "int result", Type: CEL, CEL: "int(total_tokens) * 2 + int(reasoning_tokens) + int(cache_creation_input_tokens)"}, 252},
		{Spec{MetadataKey: "route", Type: CEL, CEL: `route_name == "" ? 1 : 2`}, 1},
	} {
		r, err := tc.spec.Compile()
		if err != nil {
			t.Fatalf("%s: %v", tc.spec.MetadataKey, err)
		}
		got, err := r.Eval(&vars)
		if err != nil || got != tc.want {
			t.Errorf("%s = %d (%v), want %d", tc.spec.MetadataKey, got, err, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		msg  string
	}{
		{Spec{Type: InputToken}, "metadata_key"},
		{Spec{MetadataKey: "k", Type: "Tokens"}, "type must be one of"},
		{Spec{MetadataKey: "k", Type: InputToken, CEL: "1"}, "only for type CEL"},
		{Spec{MetadataKey: "k", Type: CEL, CEL: "input_tokens +"}, "cel:"},
		{Spec{MetadataKey: "k", Type: CEL, CEL: "unknown_var"}, "undeclared reference"},
		{Spec{MetadataKey: "k", Type: CEL, CEL: `"text"`}, "must be an integer"},
		{Spec{MetadataKey: "k", Type: CEL, CEL: "1.5"}, "must be an integer"},
		{Spec{MetadataKey: "k", Type: CEL, CEL: "int(input_tokens) - 1"}, "negative"},
	} {
		err := tc.spec.Check()
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: error %v, want one containing %q", tc.spec, err, tc.msg)
		}
	}
	if _, err := CompileAll([]Spec{{MetadataKey: "a", Type: InputToken}, {MetadataKey: "a", Type: OutputToken}}); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate keys: %v", err)
	}
}

// A negative result at run time is an error, not a huge unsigned cost.
func TestNegativeAtRuntime(t *testing.T) {
	r, err := Spec{MetadataKey: "k", Type: CEL, CEL: "output_tokens > 2u ? -1 : 0"}.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.Eval(&Vars{Output: 3}); err == nil {
		t.Errorf("got %d, want an error", v)
	}
}

func TestMerge(t *testing.T) {
	global, _ := CompileAll([]Spec{{MetadataKey: "llm_total_token", Type: TotalToken}, {MetadataKey: "llm_input_token", Type: InputToken}})
	own, _ := CompileAll([]Spec{{MetadataKey: "llm_total_token", Type: CEL, CEL: "total_tokens * 2u"}})
	rules := Merge(own, global)
	if len(rules) != 2 || rules[0].Key != "llm_total_token" || rules[1].Key != "llm_input_token" {
		t.Fatalf("merged %+v", rules)
	}
	if v, _ := rules[0].Eval(&vars); v != 240 {
		t.Errorf("the model's rule must win: %d", v)
	}
	if got := Merge(nil, global); len(got) != 2 {
		t.Errorf("no own rules: %d", len(got))
	}
}

func BenchmarkEvalCEL(b *testing.B) {
	r, err := Spec{MetadataKey: "k", Type: CEL, CEL: "input_tokens - cached_input_tokens + output_tokens * 4u"}.Compile()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Eval(&vars); err != nil {
			b.Fatal(err)
		}
	}
}
