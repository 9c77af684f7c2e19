package usage

import "github.com/inflow-gateway/inflow/filter/request"

// Format is how a response body is framed.
type Format uint8

const (
	// JSON is one JSON document (a non-streaming response).
	JSON Format = iota
	// SSE is a text/event-stream.
	SSE
)

// Accountant reads one response body, piece by piece, and reports its
// usage. The zero value is unusable; call Reset before each response. An
// Accountant is reused across responses to keep its buffers.
type Accountant struct {
	kind   request.Kind
	format Format
	strip  bool

	sse   sse
	strp  stripper
	state state
}

// state is what the events of a response told so far.
type state struct {
	raw       rawUsage
	usageSeen bool
	terminal  bool
	errorSeen bool
	modelLen  int // > 0 once a model was captured
	model     [256]byte
}

// Reset prepares a for a response of an API kind in format. With strip
// (chat and completions streams only) the usage-only chunk is removed
// from what Filter passes on: set it when the gateway asked the server for
// usage the client did not ask for.
func (a *Accountant) Reset(kind request.Kind, format Format, strip bool) {
	a.kind, a.format = kind, format
	a.strip = strip && format == SSE && supportsStrip(kind)
	a.sse.reset()
	a.strp.reset(a.strip)
	a.state = state{}
}

// Strips reports whether Filter may change the body.
func (a *Accountant) Strips() bool { return a.strip }

// Write reads the next piece of the (decoded) body. Use Filter instead
// when Strips is true.
func (a *Accountant) Write(p []byte) {
	if a.format == JSON {
		a.sse.json.feed(p)
		return
	}
	a.sse.feed(p, a)
}

// Filter reads the next piece of the (decoded) body and returns what the
// client should receive for it. changed is false when that is p itself
// (then out aliases p). end says p is the last piece: anything still held
// is released. out is valid until the next call.
func (a *Accountant) Filter(p []byte, end bool) (out []byte, changed bool) {
	if !a.strip {
		a.Write(p)
		return p, false
	}
	a.strp.begin(a.sse.pos, p)
	a.sse.feed(p, a)
	return a.strp.finish(p, end)
}

// blank implements sseHandler: an event (or a blank line) ended at end.
func (a *Accountant) blank(s *sse, end int64) {
	a.event(s)
	if a.strip {
		a.strp.blank(s, end, a.usageOnly(s))
	}
}

func (a *Accountant) lf(_ *sse, end int64) {
	if a.strip {
		a.strp.lf(end)
	}
}

func (a *Accountant) data(s *sse, end int64) {
	if a.strip {
		a.strp.data(s, end)
	}
}

// usageOnly reports whether the event just dispatched is the usage-only
// chunk a chat or completions stream ends with when asked for usage:
// "choices":[] and a usage object.
func (a *Accountant) usageOnly(s *sse) bool {
	m := &s.json
	if s.dataLines == 0 || !m.caps[slotChoices].seen || m.choicesNonEmpty() {
		return false
	}
	if m.present(slotError) {
		return false
	}
	v, ok := m.get(slotUsage)
	return ok && !isNull(v)
}

// event maps a dispatched event to usage, per API.
func (a *Accountant) event(s *sse) {
	if s.dataLines == 0 {
		return
	}
	st := &a.state
	m := &s.json
	if s.isDone() {
		st.terminal = true
		return
	}
	if m.present(slotError) {
		st.errorSeen = true
	}
	if string(s.eventName()) == "error" {
		st.errorSeen = true
	}
	typ, _ := m.get(slotType)
	switch a.kind {
	case request.Responses:
		switch t, _ := parseString(typ); t {
		case "response.completed", "response.incomplete":
			st.terminal = true
		case "response.failed":
			st.terminal, st.errorSeen = true, true
		case "error":
			st.errorSeen = true
		}
		if m.present(slotInnerError) {
			st.errorSeen = true
		}
		st.takeModel(m, slotInnerModel)
		st.takeUsage(m, slotInnerUsage)
	case request.Messages:
		switch t, _ := parseString(typ); t {
		case "message_stop":
			st.terminal = true
		case "error":
			st.errorSeen = true
		}
		st.takeModel(m, slotInnerModel)
		st.takeUsage(m, slotInnerUsage) // message_start
		st.takeUsage(m, slotUsage)      // message_delta
	default:
		st.takeModel(m, slotModel)
		st.takeUsage(m, slotUsage)
	}
}

func (st *state) takeModel(m *members, s slot) {
	if st.modelLen > 0 {
		return
	}
	if v, ok := m.get(s); ok && len(v) > 2 && v[0] == '"' {
		st.modelLen = copy(st.model[:], v)
	}
}

func (st *state) takeUsage(m *members, s slot) {
	v, ok := m.get(s)
	if !ok || isNull(v) {
		return
	}
	var u rawUsage
	if parseUsage(v, &u) {
		st.raw.merge(&u)
		st.usageSeen = true
	}
}

// Finish ends the response: complete is false when the stream was cut off
// (reset, or ended by an error before the end of the body). It reports
// what was learnt.
func (a *Accountant) Finish(complete bool) Result {
	st := &a.state
	if a.format == JSON {
		m := &a.sse.json
		if m.present(slotError) {
			st.errorSeen = true
		}
		st.takeUsage(m, slotUsage)
		st.takeModel(m, slotModel)
		st.terminal = m.closed
	} else if a.sse.dataLines > 0 && complete {
		// The body ended without the blank line of its last event; the
		// event is still the server's word on usage.
		a.event(&a.sse)
	}
	r := Result{Usage: st.raw.usage(a.kind), Stripped: a.strp.dropped > 0}
	if st.modelLen > 0 {
		r.Model, _ = parseString(st.model[:st.modelLen])
	}
	switch {
	case st.errorSeen:
		r.Outcome = ErrorEvent
	case !complete || !st.terminal:
		r.Outcome = Truncated
	case !st.usageSeen:
		r.Outcome = NoUsage
	default:
		r.Outcome = Complete
	}
	return r
}
