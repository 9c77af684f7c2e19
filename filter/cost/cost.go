// Package cost turns a response's token usage into the request costs Envoy
// AI Gateway users configure (AIGatewayRoute llmRequestCosts and
// globalLLMRequestCosts): each names a dynamic-metadata key and a type,
// one of the token counts or a CEL expression over them with Envoy AI
// Gateway's variables (internal/llmcostcel). Expressions are compiled once,
// when the config is parsed; evaluation allocates nothing beyond what CEL
// itself needs.
package cost

import (
	"errors"
	"fmt"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"
)

// Type is a cost type, spelled as Envoy AI Gateway's LLMRequestCostType.
type Type string

const (
	InputToken              Type = "InputToken"
	CachedInputToken        Type = "CachedInputToken"
	CacheCreationInputToken Type = "CacheCreationInputToken"
	OutputToken             Type = "OutputToken"
	TotalToken              Type = "TotalToken"
	ReasoningToken          Type = "ReasoningToken"
	CEL                     Type = "CEL"
)

// Spec is one configured cost: the metadata key it is written under, its
// type and, for CEL, the expression. It is part of the filter config
// (filter/config), which added it in schema version 3.
type Spec struct {
	MetadataKey string `json:"metadata_key" since:"3"`
	Type        Type   `json:"type" since:"3"`
	CEL         string `json:"cel,omitempty" since:"3"`
}

// Vars are the values a cost is computed from; the names of the CEL
// variables are Envoy AI Gateway's.
type Vars struct {
	Model                                                            string // the model sent to the server (after any rewrite)
	Backend                                                          string
	RouteName                                                        string
	Input, CachedInput, CacheCreationInput, Output, Total, Reasoning uint64
}

// Rule is a compiled Spec.
type Rule struct {
	Key  string
	get  func(*Vars) uint64 // a token type's count; nil for CEL
	prog cel.Program
}

// counts reads each token type's count.
var counts = map[Type]func(*Vars) uint64{
	InputToken:              func(v *Vars) uint64 { return v.Input },
	CachedInputToken:        func(v *Vars) uint64 { return v.CachedInput },
	CacheCreationInputToken: func(v *Vars) uint64 { return v.CacheCreationInput },
	OutputToken:             func(v *Vars) uint64 { return v.Output },
	TotalToken:              func(v *Vars) uint64 { return v.Total },
	ReasoningToken:          func(v *Vars) uint64 { return v.Reasoning },
}

var env = func() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable("model", cel.StringType),
		cel.Variable("backend", cel.StringType),
		cel.Variable("route_name", cel.StringType),
		cel.Variable("input_tokens", cel.UintType),
		cel.Variable("cached_input_tokens", cel.UintType),
		cel.Variable("cache_creation_input_tokens", cel.UintType),
		cel.Variable("output_tokens", cel.UintType),
		cel.Variable("total_tokens", cel.UintType),
		cel.Variable("reasoning_tokens", cel.UintType),
	)
	if err != nil {
		panic(fmt.Sprintf("cost: CEL environment: %v", err)) // static declarations
	}
	return e
}()

// Check validates s without keeping the result.
func (s Spec) Check() error {
	_, err := s.Compile()
	return err
}

// Compile checks s and compiles its expression. A CEL expression must
// compile, have an int or uint result type, and evaluate on zero usage,
// as Envoy AI Gateway requires.
func (s Spec) Compile() (Rule, error) {
	r := Rule{Key: s.MetadataKey, get: counts[s.Type]}
	switch {
	case s.MetadataKey == "":
		return r, errors.New("metadata_key must not be empty")
	case r.get != nil && s.CEL != "":
		return r, fmt.Errorf("cel is only for type %s", CEL)
	case r.get != nil:
		return r, nil
	case s.Type != CEL:
		return r, fmt.Errorf("type must be one of InputToken, CachedInputToken, CacheCreationInputToken, OutputToken, TotalToken, ReasoningToken, CEL; got %q", s.Type)
	}
	ast, iss := env.Compile(s.CEL)
	if iss.Err() != nil {
		return r, fmt.Errorf("cel: %w", iss.Err())
	}
	if t := ast.OutputType(); !t.IsExactType(types.IntType) && !t.IsExactType(types.UintType) && !t.IsExactType(types.DynType) {
		return r, fmt.Errorf("cel: the result must be an integer, the expression has type %s", t)
	}
	prog, err := env.Program(ast)
	if err != nil {
		return r, fmt.Errorf("cel: %w", err)
	}
	r.prog = prog
	if _, err := r.Eval(&Vars{}); err != nil {
		return r, err
	}
	return r, nil
}

// Eval computes the cost for v.
func (r *Rule) Eval(v *Vars) (uint64, error) {
	if r.get != nil {
		return r.get(v), nil
	}
	out, _, err := r.prog.Eval(activation{v})
	if err != nil {
		return 0, fmt.Errorf("cel %s: %w", r.Key, err)
	}
	switch x := out.Value().(type) {
	case int64:
		if x < 0 {
			return 0, fmt.Errorf("cel %s: the result is negative (%d)", r.Key, x)
		}
		return uint64(x), nil
	case uint64:
		return x, nil
	}
	return 0, fmt.Errorf("cel %s: the result is not an integer but %s", r.Key, out.Type())
}

// activation serves the variables from Vars without building a map.
type activation struct{ v *Vars }

func (a activation) ResolveName(name string) (any, bool) {
	v := a.v
	switch name {
	case "model":
		return v.Model, true
	case "backend":
		return v.Backend, true
	case "route_name":
		return v.RouteName, true
	case "input_tokens":
		return v.Input, true
	case "cached_input_tokens":
		return v.CachedInput, true
	case "cache_creation_input_tokens":
		return v.CacheCreationInput, true
	case "output_tokens":
		return v.Output, true
	case "total_tokens":
		return v.Total, true
	case "reasoning_tokens":
		return v.Reasoning, true
	}
	return nil, false
}

func (activation) Parent() interpreter.Activation { return nil }

// CompileAll compiles specs; duplicate keys are an error.
func CompileAll(specs []Spec) ([]Rule, error) {
	rules := make([]Rule, 0, len(specs))
	seen := make(map[string]bool, len(specs))
	var errs []error
	for i, s := range specs {
		r, err := s.Compile()
		if err == nil && seen[s.MetadataKey] {
			err = fmt.Errorf("duplicate metadata_key %q", s.MetadataKey)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("[%d]: %w", i, err))
			continue
		}
		seen[s.MetadataKey] = true
		rules = append(rules, r)
	}
	return rules, errors.Join(errs...)
}

// Merge returns the rules of a model: its own, then the gateway-wide ones
// whose keys it does not set (Envoy AI Gateway: a route's cost wins over a
// global one with the same key).
func Merge(own, global []Rule) []Rule {
	if len(own) == 0 {
		return global
	}
	out := append([]Rule(nil), own...)
	for _, g := range global {
		dup := false
		for _, o := range own {
			dup = dup || o.Key == g.Key
		}
		if !dup {
			out = append(out, g)
		}
	}
	return out
}
