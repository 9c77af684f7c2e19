package envoyfilter

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/cost"
	"github.com/inflow-gateway/inflow/filter/decide"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/request"
	"github.com/inflow-gateway/inflow/filter/router"
	"github.com/inflow-gateway/inflow/filter/scheduler"
	"github.com/inflow-gateway/inflow/filter/split"
	"github.com/inflow-gateway/inflow/filter/usage"
)

// response is the response-path state of one routed inference request.
// The filter passes every body piece on as it arrives (Continue): the only
// bytes it keeps are the accountant's partial event when it strips the
// usage chunk it asked for.
type response struct {
	kind          request.Kind
	stream        bool // the request asked for a stream
	strip         bool // the filter asked for usage the client did not
	originalModel string
	servedModel   string
	backend       string
	// health is the split backend's passive health, which the response
	// status feeds; nil unless the model has backend refs.
	health    *split.Health
	costs     []cost.Rule
	start     time.Time // DecodeHeaders
	sent      time.Time // routed and sent upstream
	sched     *scheduler.Scheduler
	dests     [decide.MaxDestinations]*pool.Endpoint
	ndests    int
	served    *pool.Endpoint // resolved by servedEndpoint
	askedLoad bool           // the filter asked for the load report

	status     int
	firstByte  time.Time
	accounting bool
	encoding   usage.Encoding
	dec        *usage.Decoder
	enc        *usage.Encoder
	decodeErr  error
	finished   bool
	acct       usage.Accountant
}

// errUnsupportedEncoding: the body's content-encoding is one the filter
// cannot read.
var errUnsupportedEncoding = errors.New("unsupported content-encoding")

// responses recycles response states (a few KiB each, mostly the
// accountant's capture buffers); sync.Pool caches per P, so workers do not
// contend.
var responses = sync.Pool{New: func() any { return new(response) }}

// startResponse records what the response path needs of a routed request.
func (f *filter) startResponse(req *request.Request, d *router.Decision) {
	r := responses.Get().(*response)
	acct := r.acct // keep its buffers
	*r = response{
		kind: req.Kind, stream: req.Stream, strip: d.UsageRequested,
		originalModel: d.Model.Name, servedModel: d.ServedModel, backend: d.BackendName(), costs: d.Model.Costs,
		start: f.start, sent: time.Now(), acct: acct, sched: d.Model.Scheduler,
	}
	r.ndests = copy(r.dests[:], d.Endpoints)
	if d.Ref != nil {
		r.health = d.Ref.Health
	}
	f.resp = r
}

func (f *filter) releaseResponse() {
	if r := f.resp; r != nil {
		f.resp = nil
		if r.dec != nil {
			r.dec.Close()
		}
		// Nothing a pooled state holds may keep a config or pool alive.
		acct := r.acct
		*r = response{acct: acct}
		responses.Put(r)
	}
}

// active is the response being accounted, nil when there is none (not a
// routed inference request, or already finished).
func (f *filter) active() *response {
	if f.resp == nil || f.resp.finished {
		return nil
	}
	return f.resp
}

// EncodeHeaders counts Envoy's own error replies, and decides how the body
// is read: only a 2xx body is accounted, as text/event-stream or as one
// JSON document, decoded from gzip or deflate.
func (f *filter) EncodeHeaders(h api.ResponseHeaderMap, endStream bool) (status api.StatusType) {
	if !responsePath {
		return api.Continue
	}
	defer f.recoverResponse(&status)
	f.countEnvoyReply(h)
	r := f.active()
	if r == nil {
		return api.Continue
	}
	r.status, _ = h.Status()
	if r.health != nil && r.health.Observe(r.status, time.Now()) {
		inc(f.cfg.metrics.ejections)
		api.LogWarnf("inflow: backend %q ejected for its consecutive 5xx (status %d); its share goes to the others", r.backend, r.status)
	}
	f.observeHeaders(h)
	if r.status >= 200 && r.status < 300 {
		f.prepareAccounting(h)
	}
	if endStream {
		f.finishResponse(true)
	}
	return api.Continue
}

func (f *filter) prepareAccounting(h api.ResponseHeaderMap) {
	r := f.resp
	format := usage.JSON
	if ct, _ := h.Get(headerContentType); strings.HasPrefix(strings.ToLower(ct), contentTypeSSE) {
		format = usage.SSE
	}
	enc, _ := h.Get(headerContentEncoding)
	r.encoding = usage.ParseEncoding(enc)
	if r.encoding == usage.Unsupported {
		// Inference requests offer the server only codings the filter reads
		// (acceptEncoding), so this is a server that ignored that.
		r.decodeErr = errUnsupportedEncoding
		return
	}
	r.accounting = true
	r.acct.Reset(r.kind, format, r.strip)
	if r.encoding != usage.Identity {
		r.dec = usage.NewDecoder(r.encoding)
		if r.acct.Strips() {
			r.enc = usage.NewEncoder(r.encoding)
		}
	}
	if r.acct.Strips() {
		// The body may shrink by the usage chunk: Envoy frames it anew.
		h.Del(headerContentLength)
	}
}

// EncodeData accounts each piece and passes it on at once. A piece changes
// only when it holds (part of) the usage chunk the filter asked for, or a
// partial event that could be it, which then goes out with the next piece.
// It always returns Continue: StopAndBufferWatermark would make Envoy keep
// the whole piece (and deliver it again, grown, with the next one), where
// only a partial event's few bytes need to wait; the filter keeps those
// itself and passes the rest on now.
func (f *filter) EncodeData(buf api.BufferInstance, endStream bool) (status api.StatusType) {
	defer f.recoverResponse(&status)
	r := f.active()
	if r == nil {
		return api.Continue
	}
	n := buf.Len()
	if n > 0 && r.firstByte.IsZero() {
		r.firstByte = time.Now()
		f.observeFirstByte(r)
	}
	if r.accounting && (n > 0 || endStream) {
		var data []byte
		if n > 0 {
			data = buf.Bytes()
		}
		if out, changed := r.account(data, endStream); changed {
			if err := buf.Set(out); err != nil {
				api.LogErrorf("inflow: rewriting a response piece: %v", err)
			}
		}
	}
	if endStream {
		f.finishResponse(true)
	}
	return api.Continue
}

// EncodeTrailers ends the body: a partial event still held goes out before
// the trailers.
func (f *filter) EncodeTrailers(api.ResponseTrailerMap) (status api.StatusType) {
	defer f.recoverResponse(&status)
	r := f.active()
	if r == nil {
		return api.Continue
	}
	if r.accounting {
		if out, changed := r.account(nil, true); changed && len(out) > 0 {
			f.callbacks.EncoderFilterCallbacks().AddData(out, true)
		}
	}
	f.finishResponse(true)
	return api.Continue
}

// account reads one piece of the body; out is what the client gets
// instead of it when changed.
func (r *response) account(data []byte, end bool) (out []byte, changed bool) {
	plain := data
	if r.dec != nil {
		var err error
		if plain, err = r.dec.Decode(data, end); err != nil && r.decodeErr == nil {
			r.decodeErr = err
		}
	}
	if !r.acct.Strips() {
		r.acct.Write(plain)
		return nil, false
	}
	out, changed = r.acct.Filter(plain, end)
	if r.enc != nil {
		// A stream whose decoded bytes change is re-encoded whole: the
		// client's gzip stream is the filter's from the first byte on.
		return r.enc.Encode(out, end), true
	}
	return out, changed
}

// OnStreamComplete runs before the access log and the rate-limit filter's
// onDestroy, however the stream ended: a response cut off before its end
// is finished here, with what it carried so far.
func (f *filter) OnStreamComplete() {
	defer func() {
		if p := recover(); p != nil {
			api.LogErrorf("inflow: panic while finishing a response: %v", p)
		}
	}()
	if r := f.resp; r != nil && !r.finished {
		f.finishResponse(false)
	}
}

// recoverResponse keeps a panic on the response path from touching the
// response: the accounting stops, the bytes flow on.
func (f *filter) recoverResponse(status *api.StatusType) {
	if p := recover(); p != nil {
		api.LogErrorf("inflow: panic on the response path: %v", p)
		if f.resp != nil {
			f.resp.finished = true
		}
		*status = api.Continue
	}
}

// finishResponse records the response once: its costs as dynamic
// metadata, the GenAI metrics, the token stats and the endpoint's signals.
// complete is false when the stream ended before its body did.
func (f *filter) finishResponse(complete bool) {
	r := f.resp
	r.finished = true
	now := time.Now()
	var res usage.Result
	if r.accounting {
		res = r.acct.Finish(complete && r.decodeErr == nil)
	}
	switch {
	case errors.Is(r.decodeErr, errUnsupportedEncoding), errors.Is(r.decodeErr, usage.ErrCorrupt):
		res.Outcome = usage.Undecodable
	case r.decodeErr != nil && (res.Outcome == usage.Complete || res.Outcome == usage.NoUsage):
		res.Outcome = usage.Truncated // the compressed stream ended early
	}
	ok := r.status >= 200 && r.status < 300
	lat := latencies(r, &res, now)
	if ok && len(r.costs) > 0 {
		f.writeCosts(r, &res, lat)
	}
	f.cfg.tokens.add(r.originalModel, &res.Usage)
	f.recordGenAI(r, &res, lat, now, complete)
	f.feedback(r, &res, lat, complete)
}

// latency holds a stream's time to first token and mean inter-token
// latency, Envoy AI Gateway's way: from the request's start to the first
// body byte, and (duration - TTFT) / (output tokens - 1).
type latency struct {
	ttft, itl       time.Duration
	hasTTFT, hasITL bool
}

func latencies(r *response, res *usage.Result, now time.Time) latency {
	var l latency
	if !r.stream || r.firstByte.IsZero() {
		return l
	}
	l.ttft, l.hasTTFT = r.firstByte.Sub(r.start), true
	if out := res.Usage.Output; res.Usage.Set.Has(usage.FieldOutput) && out > 1 {
		l.itl, l.hasITL = (now.Sub(r.start)-l.ttft)/time.Duration(out-1), true
	}
	return l
}
