// Package decide is what Inflow does with one request, whichever proxy API
// carries it. The Envoy Go filter (filter/envoyfilter) and the ext_proc
// server (filter/extproc) are two adapters of these decisions: each turns
// them into its API's calls, so both answer the same requests the same way
// and make the same header, metadata and body changes. It imports nothing
// of either API.
package decide

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/inflow-gateway/inflow/filter/apierror"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/request"
	"github.com/inflow-gateway/inflow/filter/router"
)

// HTTP names both adapters use.
const (
	HeaderContentLength = "content-length"
	HeaderContentType   = "content-type"
	HeaderAllow         = "allow"
	ContentTypeJSON     = "application/json"
	pathModels          = "/v1/models"
	// pathModelPrefix starts OpenAI's retrieve-model path, /v1/models/{id}.
	pathModelPrefix = pathModels + "/"
	// modelsAllow is what the models paths answer; the rest get 405.
	modelsAllow = "GET, HEAD"
	// inferenceAllow is the one method the inference paths take.
	inferenceAllow = http.MethodPost
)

// RoutingHeaders are the request headers only Inflow may set: a client
// that sends them must not choose a model route or an upstream itself.
var RoutingHeaders = [...]string{protocol.HeaderModel, protocol.HeaderDestination, protocol.HeaderBackend}

// MaxDestinations bounds the primary plus fallbacks (config.MaxFallbacks):
// adapters size their pick scratch space with it.
const MaxDestinations = 1 + config.MaxFallbacks

// Action is what to do once a request's headers are in.
type Action uint8

const (
	// Pass: not an inference request. Continue without the RoutingHeaders.
	Pass Action = iota + 1
	// Reply: answer at once with Headers.Reply.
	Reply
	// Buffer: an inference request. Hold the headers, collect the whole
	// body, then call Body.
	Buffer
)

// Headers is the decision on a request's headers.
type Headers struct {
	Action Action
	// Inference: an inference API request, which the requests stat
	// counts (a Buffer, or a Reply refusing one).
	Inference bool
	// Kind is the API of a Buffer request.
	Kind request.Kind
	// Reply is the response of a Reply decision.
	Reply Response
}

// Response is a reply Inflow sends itself (content-type application/json):
// the models API, or an error in OpenAI's shape.
type Response struct {
	Status int
	Body   []byte
	// Allow is the Allow header of a 405 ("" for none).
	Allow string
}

// OnHeaders decides what a request is from its method, path and, when the
// client sent one, its content-length. endStream is set when the request
// has no body.
func OnHeaders(r *router.Router, method, path, contentLength string, endStream bool) Headers {
	if reply, handled := serveModels(r, method, path); handled {
		return Headers{Action: Reply, Reply: reply}
	}
	kind, inference := request.KindForPath(path)
	switch {
	case !inference:
		return Headers{Action: Pass}
	case method != http.MethodPost:
		return Headers{Action: Reply, Reply: methodNotAllowed(inferenceAllow)}
	case endStream:
		return Headers{Action: Reply, Inference: true, Reply: Reject(apierror.ErrNoBody)}
	}
	if contentLength != "" {
		if n, err := strconv.ParseInt(contentLength, 10, 64); err == nil && n > r.MaxRequestBodyBytes() {
			return Headers{Action: Reply, Inference: true, Reply: Reject(TooLarge(r, n))}
		}
	}
	return Headers{Action: Buffer, Inference: true, Kind: kind}
}

// serveModels answers the models API the way OpenAI does: the list at
// /v1/models, one model object at /v1/models/{id} (404 model_not_found for
// a model the gateway does not serve), 405 for other methods. handled is
// false for every other path.
func serveModels(r *router.Router, method, path string) (reply Response, handled bool) {
	p := request.PathOnly(path)
	if p != pathModels && !strings.HasPrefix(p, pathModelPrefix) {
		return Response{}, false
	}
	if method != http.MethodGet && method != http.MethodHead {
		return methodNotAllowed(modelsAllow), true
	}
	id := strings.TrimPrefix(p, pathModelPrefix)
	if p == pathModels || id == "" {
		return Response{Status: http.StatusOK, Body: r.ModelList()}, true
	}
	// SDKs escape the id ("org/model" arrives as org%2Fmodel); some send
	// the slash as is. Both name the same model.
	if unescaped, err := url.PathUnescape(id); err == nil {
		id = unescaped
	}
	m, err := r.Lookup([]byte(id))
	if err != nil {
		return Reject(err), true
	}
	return Response{Status: http.StatusOK, Body: m.Object()}, true
}

// methodNotAllowed is a 405 with the Allow header RFC 9110 requires, in
// the OpenAI error shape.
func methodNotAllowed(allow string) Response {
	resp := Reject(fmt.Errorf("%w: this path accepts %s", apierror.ErrMethodNotAllowed, allow))
	resp.Allow = allow
	return resp
}

// TooLarge is the error for a body of n bytes over the config's limit.
func TooLarge(r *router.Router, n int64) error {
	return fmt.Errorf("%w: %d bytes, the limit is %d", apierror.ErrBodyTooLarge, n, r.MaxRequestBodyBytes())
}

// Reject is the response a request that failed with err gets.
func Reject(err error) Response {
	e := apierror.From(err)
	return Response{Status: e.Status, Body: e.Body()}
}

// Route is what routing one request changes in it.
type Route struct {
	router.Decision
	// Request is what the parse read (kind, stream flags, spans), for the
	// response path.
	Request request.Request
	// Destination is the x-gateway-destination-endpoint header: the
	// primary endpoint, or "" to remove the header (an external backend).
	Destination string
	// Metadata is the envoy.lb / x-gateway-destination-endpoint dynamic
	// metadata value, in the form the pool's cluster reads (CONTRACTS.md
	// item 2): for override_host the ordered list "primary,fallback,...",
	// which Envoy's OverrideHost policy walks one entry per attempt; for
	// original_dst the primary alone, the only form ORIGINAL_DST parses
	// (a list there is ignored as invalid). "" for none.
	Metadata string
	// Backend is the x-inflow-backend header: the external backend picked
	// for a model split across several (backend_refs), which the model's
	// routes match; "" for none.
	Backend string
}

// Primary is the endpoint the request holds (nil for an external
// backend): Release it once when the stream ends.
func (r *Route) Primary() *pool.Endpoint {
	if len(r.Endpoints) == 0 {
		return nil
	}
	return r.Endpoints[0]
}

// Body routes a request of kind with its whole body. scratch is space for
// the pick (pass a slice of capacity MaxDestinations to avoid an
// allocation). On success the primary endpoint has been acquired.
func Body(r *router.Router, kind request.Kind, body []byte, h router.Headers, scratch []*pool.Endpoint) (Route, error) {
	return BodyInPool(r, "", kind, body, h, scratch)
}

// BodyInPool is Body for a request whose route is bound to pool
// (config.RouteConfig, router.RouteInPool); "" is Body.
func BodyInPool(r *router.Router, poolName string, kind request.Kind, body []byte, h router.Headers, scratch []*pool.Endpoint) (Route, error) {
	if n := int64(len(body)); n > r.MaxRequestBodyBytes() {
		return Route{}, TooLarge(r, n)
	}
	rt := Route{}
	if err := request.Parse(kind, body, &rt.Request); err != nil {
		return Route{}, err
	}
	d, err := r.RouteInPool(poolName, &rt.Request, body, h, scratch[:0])
	if err != nil {
		return Route{}, err
	}
	rt.Decision = d
	if d.Ref != nil {
		rt.Backend = d.Ref.Backend
	}
	if len(d.Endpoints) > 0 {
		// The header carries the primary alone (the endpoint-picker
		// protocol's header, and what access logs show).
		rt.Destination = d.Endpoints[0].Addr
		rt.Metadata = rt.Destination
		if d.Model.Destination == config.DestinationOverrideHost {
			rt.Metadata = joinAddrs(d.Endpoints)
		}
	}
	return rt, nil
}

// joinAddrs is the OverrideHost list form, "ip:port,ip:port".
func joinAddrs(eps []*pool.Endpoint) string {
	if len(eps) == 1 {
		return eps[0].Addr
	}
	n := len(eps) - 1
	for _, ep := range eps {
		n += len(ep.Addr)
	}
	var b strings.Builder
	b.Grow(n)
	for i, ep := range eps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(ep.Addr)
	}
	return b.String()
}

// RejectionStat names the stat a rejection with status counts in ("" for
// a status that is not a rejection).
func RejectionStat(status int) string {
	switch {
	case status == http.StatusRequestEntityTooLarge:
		return protocol.StatRejected413
	case status == http.StatusNotFound:
		return protocol.StatRejected404
	case status == http.StatusMethodNotAllowed:
		return protocol.StatRejected405
	case status == http.StatusTooManyRequests:
		return protocol.StatRejected429
	case status == http.StatusServiceUnavailable:
		return protocol.StatRejected503
	case status >= http.StatusInternalServerError:
		return protocol.StatInternalErrors
	case status >= http.StatusBadRequest:
		return protocol.StatRejected400
	}
	return ""
}
