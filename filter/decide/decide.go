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
	ContentTypeJSON     = "application/json"
	pathModels          = "/v1/models"
)

// RoutingHeaders are the request headers only Inflow may set: a client
// that sends them must not choose a model route or an upstream itself.
var RoutingHeaders = [...]string{protocol.HeaderModel, protocol.HeaderDestination}

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
	// Kind is the API of a Buffer request.
	Kind request.Kind
	// Reply is the response of a Reply decision.
	Reply Response
}

// Response is a reply Inflow sends itself, in OpenAI's shape.
type Response struct {
	Status int
	Body   []byte
}

// OnHeaders decides what a request is from its method, path and, when the
// client sent one, its content-length. endStream is set when the request
// has no body.
func OnHeaders(r *router.Router, method, path, contentLength string, endStream bool) Headers {
	kind, inference := request.KindForPath(path)
	switch {
	case method == http.MethodGet && request.PathOnly(path) == pathModels:
		return Headers{Action: Reply, Reply: Response{Status: http.StatusOK, Body: r.ModelList()}}
	case !inference || method != http.MethodPost:
		return Headers{Action: Pass}
	case endStream:
		return Headers{Action: Reply, Reply: Reject(apierror.ErrNoBody)}
	}
	if contentLength != "" {
		if n, err := strconv.ParseInt(contentLength, 10, 64); err == nil && n > r.MaxRequestBodyBytes() {
			return Headers{Action: Reply, Reply: Reject(TooLarge(r, n))}
		}
	}
	return Headers{Action: Buffer, Kind: kind}
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
	// Destination is the x-gateway-destination-endpoint header: the
	// primary endpoint, or "" to remove the header (an external backend).
	Destination string
	// Metadata is the envoy.lb / x-gateway-destination-endpoint dynamic
	// metadata value: the ordered list "primary,fallback,..." the
	// endpoint-picker protocol defines; "" for none.
	Metadata string
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
	if n := int64(len(body)); n > r.MaxRequestBodyBytes() {
		return Route{}, TooLarge(r, n)
	}
	var req request.Request
	if err := request.Parse(kind, body, &req); err != nil {
		return Route{}, err
	}
	d, err := r.Route(&req, body, h, scratch[:0])
	if err != nil {
		return Route{}, err
	}
	rt := Route{Decision: d}
	if len(d.Endpoints) > 0 {
		// The header carries the primary alone; the metadata carries the
		// ordered fallback list.
		rt.Destination = d.Endpoints[0].Addr
		rt.Metadata = joinAddrs(d.Endpoints)
	}
	return rt, nil
}

// joinAddrs is the list form, "ip:port,ip:port".
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
