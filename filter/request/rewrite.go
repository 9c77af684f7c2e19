package request

import "slices"

// Edit replaces a span of the body (an empty span inserts at its start).
type Edit struct {
	Span Span
	With []byte
}

// Apply returns a copy of body with the edits made, in one allocation.
// Edits must not overlap; their order does not matter.
func Apply(body []byte, edits ...Edit) []byte {
	slices.SortFunc(edits, func(a, b Edit) int { return a.Span.Start - b.Span.Start })
	n := len(body)
	for _, e := range edits {
		n += len(e.With) - (e.Span.End - e.Span.Start)
	}
	out := make([]byte, 0, n)
	prev := 0
	for _, e := range edits {
		out = append(out, body[prev:e.Span.Start]...)
		out = append(out, e.With...)
		prev = max(e.Span.End, e.Span.Start)
	}
	return append(out, body[prev:]...)
}

// MaxEdits is the most edits one request gets: the model, and at most two
// to ask for usage (UsageEdits).
const MaxEdits = 3

// Edits are a request's body edits, kept inline so a routing decision
// carries them without allocating, and sorted by position, so an adapter
// can apply them to its proxy's buffer piece by piece (see Pieces) instead
// of building a new body.
type Edits struct {
	list [MaxEdits]Edit
	n    int
}

// NewEdits holds list (at most MaxEdits edits that do not overlap).
func NewEdits(list []Edit) Edits {
	var e Edits
	e.n = copy(e.list[:], list)
	slices.SortFunc(e.list[:e.n], func(a, b Edit) int { return a.Span.Start - b.Span.Start })
	return e
}

// Any reports whether there is an edit.
func (e *Edits) Any() bool { return e.n > 0 }

// List is the edits in body order.
func (e *Edits) List() []Edit { return e.list[:e.n] }

// Size is the length of a body of bodyLen bytes once edited.
func (e *Edits) Size(bodyLen int) int {
	for _, x := range e.List() {
		bodyLen += len(x.With) - (x.Span.End - x.Span.Start)
	}
	return bodyLen
}

// End is where the last edit ends: the body from there on is unchanged.
func (e *Edits) End() int {
	if e.n == 0 {
		return 0
	}
	last := e.list[e.n-1].Span
	return max(last.End, last.Start)
}

// Pieces calls yield with the edited body's bytes before End, from the
// last piece to the first, skipping empty ones: what to prepend, in that
// order, to the body's unchanged tail. The pieces are body's own bytes and
// the edits' replacements; nothing is copied.
func (e *Edits) Pieces(body []byte, yield func([]byte) error) error {
	end := e.End()
	for i := e.n - 1; i >= 0; i-- {
		x := &e.list[i]
		if err := yieldNonEmpty(yield, body[max(x.Span.End, x.Span.Start):end]); err != nil {
			return err
		}
		if err := yieldNonEmpty(yield, x.With); err != nil {
			return err
		}
		end = x.Span.Start
	}
	return yieldNonEmpty(yield, body[:end])
}

func yieldNonEmpty(yield func([]byte) error, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	return yield(p)
}

// Apply returns a copy of body with the edits made, or nil when there is
// none.
func (e *Edits) Apply(body []byte) []byte {
	if e.n == 0 {
		return nil
	}
	return Apply(body, e.List()...)
}

// ModelEdit replaces the body's "model" value (the one Parse found, i.e.
// the last) with quotedModel, a JSON string token. Splicing at the parsed
// span keeps duplicate keys right: a path-based setter such as sjson edits
// the first "model" while model servers read the last one.
func ModelEdit(r *Request, quotedModel []byte) Edit {
	return Edit{Span: r.ModelSpan, With: quotedModel}
}

// RewriteModel returns a copy of body with the model replaced (ModelEdit).
func RewriteModel(body []byte, r *Request, quotedModel []byte) []byte {
	return Apply(body, ModelEdit(r, quotedModel))
}

// AsksForUsage reports whether a streaming request already asks a vLLM
// server for usage: stream_options is an object whose include_usage is
// true or absent (vLLM's StreamOptions defaults it to true).
func (r *Request) AsksForUsage(body []byte) bool {
	if r.StreamOptions.Empty() || body[r.StreamOptions.Start] != '{' {
		return false
	}
	return r.IncludeUsageSpan.Empty() || r.IncludeUsage
}

var (
	streamOptionsMember = []byte(`,"stream_options":{"include_usage":true}`)
	usageObject         = []byte(`{"include_usage":true}`)
	jsonTrue            = []byte(`true`)
	jsonFalse           = []byte(`false`)
)

// UsageEdits are the edits that make a streaming request that does not ask
// for usage (AsksForUsage false) ask for it and for nothing else: add
// stream_options, or replace a non-object one, or set its include_usage to
// true; a continuous_usage_stats: true is turned off, since with
// include_usage false it had no effect and with it on every chunk would
// change. Appended at the end of the object, a new stream_options is the
// last one, which is what Python servers read.
func (r *Request) UsageEdits(body []byte, dst []Edit) []Edit {
	switch {
	case r.StreamOptions.Empty():
		return append(dst, Edit{Span: Span{r.End, r.End}, With: streamOptionsMember})
	case body[r.StreamOptions.Start] != '{':
		return append(dst, Edit{Span: r.StreamOptions, With: usageObject})
	}
	if r.IncludeUsageSpan.Empty() {
		return dst // an object without include_usage already asks (vLLM)
	}
	dst = append(dst, Edit{Span: r.IncludeUsageSpan, With: jsonTrue})
	if s := r.ContinuousUsageSpan; !s.Empty() && string(body[s.Start:s.End]) == "true" {
		dst = append(dst, Edit{Span: s, With: jsonFalse})
	}
	return dst
}
