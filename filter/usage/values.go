package usage

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/inflow-gateway/inflow/filter/request"
)

// This file reads the small values the member scanner captured (a usage
// object, a model string). They come from a model server and are bounded
// in size; malformed input yields zero values, never a panic.

// rawUsage is a usage object as reported, before the API's rules map it to
// Usage. Its fields cover the OpenAI, Responses and Anthropic shapes.
type rawUsage struct {
	vals [numRaw]uint64
	set  rawFields
}

// rawField is one reported count; rawFields is a set of them.
type rawField uint8

type rawFields uint16

const (
	rawPrompt rawField = iota
	rawCompletion
	rawTotal
	rawInput
	rawOutput
	rawCached
	rawReasoning
	rawCacheRead
	rawCacheCreation
	numRaw
)

func (u *rawUsage) has(f rawField) bool { return u.set&(1<<f) != 0 }

// merge overrides u's fields with those o reports: later usage reports
// are cumulative, so the newest value of each field wins.
func (u *rawUsage) merge(o *rawUsage) {
	for f := range numRaw {
		if o.has(f) {
			u.vals[f] = o.vals[f]
		}
	}
	u.set |= o.set
}

// usage maps the report to Usage by the API's rules: Anthropic's
// input_tokens excludes cached and cache-creation tokens, which Envoy AI
// Gateway adds to the input; embeddings have no output tokens (vLLM
// reports completion_tokens 0, Envoy AI Gateway records none).
func (u *rawUsage) usage(kind request.Kind) Usage {
	var out Usage
	// take sets dst from the first reported of the raw fields.
	take := func(dst *uint64, f Fields, from ...rawField) {
		for _, r := range from {
			if u.has(r) {
				*dst = u.vals[r]
				out.Set |= f
				return
			}
		}
	}
	if kind == request.Messages {
		if u.has(rawInput) || u.has(rawCacheRead) || u.has(rawCacheCreation) {
			out.Input = u.vals[rawInput] + u.vals[rawCacheRead] + u.vals[rawCacheCreation]
			out.Set |= FieldInput
		}
		take(&out.CachedInput, FieldCachedInput, rawCacheRead)
		take(&out.CacheCreationInput, FieldCacheCreationInput, rawCacheCreation)
	} else {
		take(&out.Input, FieldInput, rawPrompt, rawInput)
		take(&out.CachedInput, FieldCachedInput, rawCached)
		take(&out.Total, FieldTotal, rawTotal)
	}
	take(&out.Output, FieldOutput, rawCompletion, rawOutput)
	take(&out.Reasoning, FieldReasoning, rawReasoning)
	if !out.Set.Has(FieldTotal) && out.Set&(FieldInput|FieldOutput) != 0 {
		out.Total = out.Input + out.Output
		out.Set |= FieldTotal
	}
	if kind == request.Embeddings {
		out.Output, out.Set = 0, out.Set&^FieldOutput
	}
	return out
}

// usageKeys maps the count keys of every usage shape to their field;
// detailKeys those of the nested *_details objects.
var (
	usageKeys = map[string]rawField{
		"prompt_tokens": rawPrompt, "completion_tokens": rawCompletion, "total_tokens": rawTotal,
		"input_tokens": rawInput, "output_tokens": rawOutput,
		"cache_read_input_tokens": rawCacheRead, "cache_creation_input_tokens": rawCacheCreation,
	}
	detailKeys = map[string]rawField{"cached_tokens": rawCached, "reasoning_tokens": rawReasoning}
)

// parseUsage reads a captured usage object. It reports false when v is not
// an object (null, or cut short by the capture limit).
func parseUsage(v []byte, u *rawUsage) bool {
	*u = rawUsage{}
	return walkObject(v, func(key, val []byte) {
		if f, ok := usageKeys[string(key)]; ok {
			u.setUint(f, val)
			return
		}
		switch string(key) {
		case "prompt_tokens_details", "input_tokens_details", "completion_tokens_details", "output_tokens_details":
			walkObject(val, func(k, v []byte) {
				if f, ok := detailKeys[string(k)]; ok {
					u.setUint(f, v)
				}
			})
		}
	})
}

// setUint stores a JSON number as a token count; null and other types
// leave the field unset. Counts are integers; a fraction is dropped and a
// negative number counts as 0.
func (u *rawUsage) setUint(f rawField, v []byte) {
	if len(v) == 0 || !(v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
		return
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		x, ferr := strconv.ParseFloat(string(v), 64)
		if ferr != nil {
			return
		}
		switch {
		case !(x > 0):
			n = 0
		case x >= math.MaxUint64:
			n = math.MaxUint64
		default:
			n = uint64(x)
		}
	}
	u.vals[f] = n
	u.set |= 1 << f
}

// walkObject calls fn with every member of the JSON object v (raw key
// contents without quotes, raw value bytes). It reports false when v does
// not start as an object; members after malformed input are not visited.
func walkObject(v []byte, fn func(key, val []byte)) bool {
	i := skipWS(v, 0)
	if i >= len(v) || v[i] != '{' {
		return false
	}
	i++
	for {
		i = skipWS(v, i)
		if i >= len(v) || v[i] != '"' {
			return true // '}' or malformed: done either way
		}
		kEnd := stringEnd(v, i)
		if kEnd < 0 {
			return true
		}
		key := v[i+1 : kEnd-1]
		i = skipWS(v, kEnd)
		if i >= len(v) || v[i] != ':' {
			return true
		}
		i = skipWS(v, i+1)
		vEnd := valueEnd(v, i)
		if vEnd < 0 {
			return true
		}
		fn(key, v[i:vEnd])
		i = skipWS(v, vEnd)
		if i >= len(v) || v[i] != ',' {
			return true
		}
		i++
	}
}

func skipWS(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the closing quote of the string
// starting at v[i] == '"', or -1.
func stringEnd(v []byte, i int) int {
	for j := i + 1; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// valueEnd returns the index after the JSON value starting at v[i], or -1
// when it does not end inside v.
func valueEnd(v []byte, i int) int {
	if i >= len(v) {
		return -1
	}
	switch v[i] {
	case '"':
		return stringEnd(v, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(v); j++ {
			switch v[j] {
			case '"':
				e := stringEnd(v, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(v) && v[j] != ',' && v[j] != '}' && v[j] != ']' && v[j] != ' ' && v[j] != '\t' && v[j] != '\n' && v[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// isNull reports whether a captured value is absent or JSON null.
func isNull(v []byte) bool {
	return len(v) == 0 || string(v) == "null"
}

// parseString decodes a captured JSON string value; ok is false for any
// other value. Escaped strings (rare: model names are plain) are decoded
// by encoding/json.
func parseString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	raw := v[1 : len(v)-1]
	plain := true
	for _, c := range raw {
		if c == '\\' || c == '"' || c < 0x20 || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return string(raw), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}
