package envoyfilter

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/apierror"
	"github.com/inflow-gateway/inflow/filter/decide"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/request"
	"github.com/inflow-gateway/inflow/filter/usage"
)

// filter handles one HTTP stream.
type filter struct {
	api.PassThroughStreamFilter

	cfg       *filterConfig
	callbacks api.FilterCallbackHandler

	// headers is kept from DecodeHeaders of an inference request: it stays
	// writable until the body is processed because headers returned
	// StopAndBuffer.
	headers  api.RequestHeaderMap
	kind     request.Kind
	endpoint *pool.Endpoint
	// repliedLocally: the filter sent this stream's response itself.
	repliedLocally bool
	// start is when the request's headers arrived; resp is the response
	// path's state of a routed inference request.
	start time.Time
	resp  *response
}

// DecodeHeaders drops the routing headers a client could use to pick an
// arbitrary upstream, on every request: a request may never reach
// DecodeData (headers then trailers, no body), and what the router or the
// cluster trusts must not come from the client. Then it answers the models
// API and wrong methods, buffers inference POSTs and lets the rest through.
func (f *filter) DecodeHeaders(h api.RequestHeaderMap, endStream bool) (status api.StatusType) {
	defer f.recoverPanic(&status)
	f.stripRoutingHeaders(h)
	cl, _ := h.Get(decide.HeaderContentLength)
	d := decide.OnHeaders(f.cfg.router, h.Method(), h.Path(), cl, endStream)
	if d.Inference {
		inc(f.cfg.metrics.requests)
		f.start = time.Now()
	}
	switch d.Action {
	case decide.Pass:
		return api.Continue
	case decide.Reply:
		return f.respond(d.Reply)
	}
	f.headers, f.kind = h, d.Kind
	return api.StopAndBuffer
}

// DecodeData runs once with the whole body: with StopAndBuffer Envoy only
// calls it at end of stream, or, when the request has trailers, just before
// them with endStream false, which is then also the whole body.
func (f *filter) DecodeData(buf api.BufferInstance, endStream bool) (status api.StatusType) {
	defer f.recoverPanic(&status)
	if f.headers == nil {
		return api.Continue
	}
	h := f.headers
	f.headers = nil
	var scratch [decide.MaxDestinations]*pool.Endpoint
	body := buf.Bytes()
	rt, err := decide.BodyInPool(f.cfg.router, f.cfg.routePool, f.kind, body, h, scratch[:0])
	if err != nil {
		return f.fail(err)
	}
	if f.endpoint = rt.Primary(); f.endpoint != nil {
		f.cfg.metrics.addInFlight(1)
	}
	if rt.Edits.Any() {
		if err := writeEdits(buf, body, &rt.Edits); err != nil {
			return f.fail(fmt.Errorf("%w: rewriting body: %w", apierror.ErrInternal, err))
		}
		if _, ok := h.Get(decide.HeaderContentLength); ok {
			h.Set(decide.HeaderContentLength, strconv.Itoa(rt.Edits.Size(len(body))))
		}
		inc(f.cfg.metrics.rewrites)
	}
	if responsePath {
		f.startResponse(&rt.Request, &rt.Decision)
		f.askLoadReport(h, &rt.Request, &rt.Decision)
		restrictAcceptEncoding(h)
	}
	h.Set(protocol.HeaderModel, rt.Model.Name)
	if rt.Backend != "" {
		h.Set(protocol.HeaderBackend, rt.Backend)
	}
	// Nothing the client sent survives: the header is overwritten (Set
	// replaces every copy) or removed, and the metadata is only ever
	// written here, from the pool's own endpoints.
	if rt.Destination != "" {
		h.Set(protocol.HeaderDestination, rt.Destination)
		f.callbacks.StreamInfo().DynamicMetadata().Set(protocol.MetadataNamespaceLB, protocol.MetadataKeyDestination, rt.Metadata)
	} else {
		h.Del(protocol.HeaderDestination)
	}
	// Routes match x-ai-eg-model, which did not exist when the route was
	// first chosen.
	f.callbacks.ClearRouteCache()
	if api.GetLogLevel() <= api.Debug {
		api.LogDebugf("inflow: model=%q served=%q endpoint=%v fail_open=%v", rt.Model.Name, rt.ServedModel, endpointAddr(f.endpoint), rt.FailOpen)
	}
	return api.Continue
}

// DecodeTrailers ends a buffered inference request that had trailers and
// no body (HTTP/2 HEADERS then trailers): DecodeData never ran, so there is
// nothing to route on.
func (f *filter) DecodeTrailers(api.RequestTrailerMap) (status api.StatusType) {
	defer f.recoverPanic(&status)
	if f.headers == nil {
		return api.Continue
	}
	f.headers = nil
	return f.fail(apierror.ErrNoBody)
}

// OnDestroy runs once per stream however it ends (done, reset, local
// reply), so the in-flight count cannot leak.
func (f *filter) OnDestroy(api.DestroyReason) {
	f.release()
	f.releaseResponse()
}

// release ends the stream's hold on its endpoint, once.
func (f *filter) release() {
	if f.endpoint != nil {
		f.endpoint.Release()
		f.endpoint = nil
		f.cfg.metrics.addInFlight(-1)
	}
}

// restrictAcceptEncoding lets the server pick only codings the response
// path can read, so usage is never lost to a br or zstd body.
func restrictAcceptEncoding(h api.RequestHeaderMap) {
	v, ok := h.Get(headerAcceptEncoding)
	if !ok {
		return
	}
	switch out, changed := usage.RestrictAcceptEncoding(v); {
	case !changed:
	case out == "":
		h.Del(headerAcceptEncoding)
	default:
		h.Set(headerAcceptEncoding, out)
	}
}

func (f *filter) stripRoutingHeaders(h api.RequestHeaderMap) {
	stripped := false
	for _, name := range decide.RoutingHeaders {
		if _, ok := h.Get(name); ok {
			h.Del(name)
			stripped = true
		}
	}
	if stripped {
		f.callbacks.ClearRouteCache()
	}
}

// fail answers with the error's status and OpenAI-shaped body.
func (f *filter) fail(err error) api.StatusType { return f.respond(decide.Reject(err)) }

// recoverPanic turns a panic in the filter into a 500 for this request. If
// even the reply fails, the panic goes on to the SDK's own recovery, which
// knows how to end a stream that is gone.
func (f *filter) recoverPanic(status *api.StatusType) {
	r := recover()
	if r == nil {
		return
	}
	api.LogErrorf("inflow: panic while handling a request: %v\n%s", r, debug.Stack())
	f.release()
	f.releaseResponse() // the 500 below is the filter's, not the endpoint's
	f.headers = nil
	*status = f.fail(apierror.ErrInternal)
}

func endpointAddr(ep *pool.Endpoint) string {
	if ep == nil {
		return "-"
	}
	return ep.Addr
}
