package request

// Span is a half-open byte range of the body.
type Span struct{ Start, End int }

// Empty reports whether the span covers nothing.
func (s Span) Empty() bool { return s.End <= s.Start }

// Request is what the gateway reads from an inference body. Byte slices
// alias the body passed to Parse.
type Request struct {
	Kind Kind
	// Model is the decoded top-level "model" string (the last one when the
	// key repeats, as Python's json module reads it).
	Model []byte
	// Stream is true when the last top-level "stream" is literal true.
	Stream bool
	// IncludeUsage is stream_options.include_usage, read the same way.
	IncludeUsage bool
	// Prompt holds raw JSON values the scheduler hashes for prefix
	// affinity, in order: the system part (Anthropic "system", Responses
	// "instructions") and the conversation ("messages", "prompt", "input").
	Prompt [2]Span
	// ModelSpan is the raw "model" string token including its quotes.
	ModelSpan Span
	// StreamOptions is the raw value of the last top-level
	// "stream_options"; IncludeUsageSpan and ContinuousUsageSpan are the raw
	// values of the last include_usage and continuous_usage_stats in it
	// (when it is an object). Empty when absent.
	StreamOptions, IncludeUsageSpan, ContinuousUsageSpan Span
	// End is the offset of the closing brace of the top-level object.
	End int

	modelBuf [64]byte
}

// PromptBytes returns the i-th prompt part of body (nil when absent).
func (r *Request) PromptBytes(body []byte, i int) []byte {
	if r.Prompt[i].Empty() {
		return nil
	}
	return body[r.Prompt[i].Start:r.Prompt[i].End]
}

type field uint8

const (
	fieldOther field = iota
	fieldModel
	fieldStream
	fieldStreamOptions
	fieldSystemPrompt
	fieldPrompt
)

// classify names a top-level key for this kind of request.
func classify(kind Kind, key []byte) field {
	switch string(key) {
	case "model":
		return fieldModel
	case "stream":
		return fieldStream
	case "stream_options":
		return fieldStreamOptions
	case "messages":
		if kind == ChatCompletions || kind == Messages {
			return fieldPrompt
		}
	case "prompt":
		if kind == Completions {
			return fieldPrompt
		}
	case "input":
		if kind == Embeddings || kind == Responses {
			return fieldPrompt
		}
	case "system":
		if kind == Messages {
			return fieldSystemPrompt
		}
	case "instructions":
		if kind == Responses {
			return fieldSystemPrompt
		}
	}
	return fieldOther
}

// modelState tracks the last "model" seen: a later key always replaces an
// earlier one, whatever its type.
type modelState uint8

const (
	modelAbsent modelState = iota
	modelString
	modelOther
)

// Parse reads body into r in a single pass. It returns an error wrapping
// ErrInvalidJSON, ErrNotObject, ErrMissingModel or ErrModelNotString.
func Parse(kind Kind, body []byte, r *Request) error {
	*r = Request{Kind: kind}
	s := scanner{buf: body}
	s.skipSpace()
	if s.pos >= len(body) {
		return syntaxErr(s.pos, "empty body")
	}
	if body[s.pos] != '{' {
		if err := s.skipValue(); err != nil {
			return err
		}
		if s.skipSpace(); s.pos != len(body) {
			return syntaxErr(s.pos, "invalid character after top-level value")
		}
		return ErrNotObject
	}
	s.pos++
	s.depth = 1
	s.skipSpace()
	var model modelState
	var modelEscaped bool
	if s.pos < len(body) && body[s.pos] == '}' {
		r.End = s.pos
		s.pos++
	} else {
		for {
			keyStart, keyEnd, keyEscaped, err := s.expectKey()
			if err != nil {
				return err
			}
			f := classifyKey(kind, body[keyStart+1:keyEnd-1], keyEscaped)
			valueStart := s.pos
			switch f {
			case fieldModel:
				if valueStart < len(body) && body[valueStart] == '"' {
					escaped, err := s.scanString()
					if err != nil {
						return err
					}
					model, modelEscaped = modelString, escaped
					r.ModelSpan = Span{valueStart, s.pos}
				} else {
					if err := s.skipValue(); err != nil {
						return err
					}
					model = modelOther
				}
			case fieldStream:
				if err := s.skipValue(); err != nil {
					return err
				}
				r.Stream = string(body[valueStart:s.pos]) == "true"
			case fieldStreamOptions:
				r.IncludeUsage = false
				r.IncludeUsageSpan, r.ContinuousUsageSpan = Span{}, Span{}
				if err := s.scanStreamOptions(r); err != nil {
					return err
				}
				r.StreamOptions = Span{valueStart, s.pos}
			default:
				if err := s.skipValue(); err != nil {
					return err
				}
				switch f {
				case fieldSystemPrompt:
					r.Prompt[0] = Span{valueStart, s.pos}
				case fieldPrompt:
					r.Prompt[1] = Span{valueStart, s.pos}
				}
			}
			s.skipSpace()
			if s.pos >= len(body) {
				return s.unexpected("")
			}
			if body[s.pos] == '}' {
				r.End = s.pos
				s.pos++
				break
			}
			if body[s.pos] != ',' {
				return s.unexpected("after object key:value pair")
			}
			s.pos++
		}
	}
	s.skipSpace()
	if s.pos != len(body) {
		return syntaxErr(s.pos, "invalid character after top-level value")
	}
	switch model {
	case modelAbsent:
		return ErrMissingModel
	case modelOther:
		return ErrModelNotString
	}
	raw := body[r.ModelSpan.Start+1 : r.ModelSpan.End-1]
	if modelEscaped {
		r.Model = unquote(r.modelBuf[:0], raw)
	} else {
		r.Model = raw
	}
	return nil
}

// classifyKey classifies a raw key token's contents, decoding escapes the
// way encoding/json does ("mod\u0065l" is "model").
func classifyKey(kind Kind, raw []byte, escaped bool) field {
	if !escaped {
		return classify(kind, raw)
	}
	// Every key of interest is short; a longer decoded key is "other".
	var buf [32]byte
	key := unquote(buf[:0], raw)
	if len(key) > len(buf) {
		return fieldOther
	}
	return classify(kind, key)
}

// scanStreamOptions scans the value of "stream_options" at s.pos, reading
// include_usage when it is an object.
func (s *scanner) scanStreamOptions(r *Request) error {
	if s.pos >= len(s.buf) || s.buf[s.pos] != '{' {
		return s.skipValue()
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.buf) && s.buf[s.pos] == '}' {
		s.pos++
		return nil
	}
	if err := s.push(true); err != nil {
		return err
	}
	for {
		keyStart, keyEnd, keyEscaped, err := s.expectKey()
		if err != nil {
			return err
		}
		key := s.buf[keyStart+1 : keyEnd-1]
		if keyEscaped {
			var buf [32]byte
			if key = unquote(buf[:0], key); len(key) > len(buf) {
				key = nil
			}
		}
		valueStart := s.pos
		if err := s.skipValue(); err != nil {
			return err
		}
		switch string(key) {
		case "include_usage":
			r.IncludeUsageSpan = Span{valueStart, s.pos}
			r.IncludeUsage = string(s.buf[valueStart:s.pos]) == "true"
		case "continuous_usage_stats":
			r.ContinuousUsageSpan = Span{valueStart, s.pos}
		}
		s.skipSpace()
		if s.pos >= len(s.buf) {
			return s.unexpected("")
		}
		switch s.buf[s.pos] {
		case '}':
			s.pos++
			s.depth--
			return nil
		case ',':
			s.pos++
		default:
			return s.unexpected("after object key:value pair")
		}
	}
}
