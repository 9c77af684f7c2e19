package extproc

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/inflow-gateway/inflow/filter/apierror"
	"github.com/inflow-gateway/inflow/filter/decide"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/request"
	"github.com/inflow-gateway/inflow/filter/router"
)

type bodyMode = extprocfilterv3.ProcessingMode_BodySendMode

const (
	modeNone       = extprocfilterv3.ProcessingMode_NONE
	modeBuffered   = extprocfilterv3.ProcessingMode_BUFFERED
	modeFullDuplex = extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED
)

// ErrBodyMode: the proxy sends the request body in a mode that cannot
// carry a routing decision (the headers would be gone before the body is
// whole).
var errBodyMode = fmt.Errorf("%w: the ext_proc filter's request_body_mode must be BUFFERED or FULL_DUPLEX_STREAMED", apierror.ErrInternal)

// stream is one HTTP request's ext_proc conversation.
type stream struct {
	router *router.Router
	stats  *Stats
	log    *slog.Logger
	send   func(*extprocv3.ProcessingResponse) error

	// What the proxy told us of its processing mode (protocol_config, on
	// the first message). Without it both bodies are assumed full-duplex
	// streamed, the endpoint picker's mode.
	requestMode, responseMode bodyMode

	headers  headerList
	hasCL    bool
	kind     request.Kind
	waiting  bool // headers held: an inference request waiting for its body
	body     []byte
	routed   bool
	endpoint *pool.Endpoint
}

// handle answers one message; done ends the stream (an immediate
// response was sent).
func (s *stream) handle(req *extprocv3.ProcessingRequest) (done bool, err error) {
	if pc := req.GetProtocolConfig(); pc != nil {
		s.requestMode, s.responseMode = pc.GetRequestBodyMode(), pc.GetResponseBodyMode()
	} else if s.headers == nil {
		s.requestMode, s.responseMode = modeFullDuplex, modeFullDuplex
	}
	observe := req.GetObservabilityMode() // the proxy wants no answers
	switch m := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return s.requestHeaders(m.RequestHeaders)
	case *extprocv3.ProcessingRequest_RequestBody:
		return s.requestBody(m.RequestBody, observe)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return s.requestTrailers(observe)
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return false, s.reply(observe, &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &extprocv3.HeadersResponse{}}})
	case *extprocv3.ProcessingRequest_ResponseBody:
		return false, s.responseBody(m.ResponseBody, observe)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return false, s.reply(observe, &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
			ResponseTrailers: &extprocv3.TrailersResponse{}}})
	}
	return false, nil
}

func (s *stream) reply(observe bool, r *extprocv3.ProcessingResponse) error {
	if observe {
		return nil
	}
	return s.send(r)
}

func (s *stream) requestHeaders(m *extprocv3.HttpHeaders) (bool, error) {
	s.headers = headerList(m.GetHeaders().GetHeaders())
	method, _ := s.headers.Get(":method")
	path, _ := s.headers.Get(":path")
	cl, hasCL := s.headers.Get(decide.HeaderContentLength)
	s.hasCL = hasCL
	d := decide.OnHeaders(s.router, method, path, cl, m.GetEndOfStream())
	if d.Inference {
		s.stats.requests.Add(1)
	}
	switch d.Action {
	case decide.Reply:
		return true, s.immediate(d.Reply)
	case decide.Pass:
		mut := stripRouting(s.headers)
		resp := headersResponse(mut, nil)
		resp.GetRequestHeaders().Response.ClearRouteCache = mut != nil
		return false, s.send(resp)
	}
	s.kind, s.waiting = d.Kind, true
	switch s.requestMode {
	case modeFullDuplex:
		// The headers response comes with the decision, after the body.
		if n, err := strconv.Atoi(cl); err == nil && n > 0 && int64(n) <= s.router.MaxRequestBodyBytes() {
			s.body = make([]byte, 0, n)
		}
		return false, nil
	case modeBuffered:
		// The proxy holds the headers until the body response, which
		// carries the header mutations.
		return false, s.send(headersResponse(nil, nil))
	}
	return true, s.reject(errBodyMode)
}

func (s *stream) requestBody(m *extprocv3.HttpBody, observe bool) (bool, error) {
	if !s.waiting || s.routed {
		// Not an inference request (or already decided): pass it on.
		return false, s.passBody(m, observe)
	}
	if s.requestMode == modeBuffered {
		// The one message holds the whole body, trailers or not.
		return s.route(m.GetBody(), true)
	}
	s.body = append(s.body, m.GetBody()...)
	if n := int64(len(s.body)); n > s.router.MaxRequestBodyBytes() {
		return true, s.reject(decide.TooLarge(s.router, n))
	}
	if !m.GetEndOfStream() {
		return false, nil
	}
	return s.route(s.body, true)
}

// passBody answers a body chunk of a request Inflow does not change.
func (s *stream) passBody(m *extprocv3.HttpBody, observe bool) error {
	if s.requestMode != modeFullDuplex {
		return s.reply(observe, bodyResponse(&extprocv3.CommonResponse{}, nil, false))
	}
	return s.reply(observe, streamedBody(m.GetBody(), m.GetEndOfStream(), false))
}

func (s *stream) requestTrailers(observe bool) (bool, error) {
	if s.waiting && !s.routed && s.requestMode == modeFullDuplex {
		// Trailers end the body: the last chunk had no end_of_stream.
		if done, err := s.route(s.body, false); done || err != nil {
			return done, err
		}
	}
	return false, s.reply(observe, &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
		RequestTrailers: &extprocv3.TrailersResponse{}}})
}

// route decides with the whole body and sends the decision; endOfStream
// is false when trailers follow the body.
func (s *stream) route(body []byte, endOfStream bool) (bool, error) {
	s.routed = true
	var scratch [decide.MaxDestinations]*pool.Endpoint
	rt, err := decide.Body(s.router, s.kind, body, s.headers, scratch[:0])
	if err != nil {
		return true, s.reject(err)
	}
	if s.endpoint = rt.Primary(); s.endpoint != nil {
		s.stats.inFlight.Add(1)
	}
	out := body
	if rt.Edits.Any() {
		out = rt.Edits.Apply(body)
		s.stats.rewrites.Add(1)
	}
	mut := routeMutation(&rt, len(out), s.hasCL)
	md := destinationMetadata(rt.Metadata)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("routed", "model", rt.Model.Name, "served", rt.ServedModel, "endpoint", rt.Destination, "fail_open", rt.FailOpen)
	}
	if s.requestMode == modeBuffered {
		common := &extprocv3.CommonResponse{HeaderMutation: mut, ClearRouteCache: true}
		if rt.Edits.Any() {
			common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: out}}
		}
		return false, s.send(bodyResponse(common, md, false))
	}
	resp := headersResponse(mut, md)
	resp.GetRequestHeaders().Response.ClearRouteCache = true
	if err := s.send(resp); err != nil {
		return false, err
	}
	return false, s.sendChunks(out, endOfStream, false)
}

// sendChunks sends body as streamed_response chunks of at most
// MaxBodyChunkBytes; the last carries endOfStream.
func (s *stream) sendChunks(body []byte, endOfStream, response bool) error {
	for {
		n := min(len(body), MaxBodyChunkBytes)
		last := n == len(body)
		if err := s.send(streamedBody(body[:n], endOfStream && last, response)); err != nil {
			return err
		}
		if last {
			return nil
		}
		body = body[n:]
	}
}

func (s *stream) responseBody(m *extprocv3.HttpBody, observe bool) error {
	if s.responseMode == modeFullDuplex {
		if observe {
			return nil
		}
		return s.sendChunks(m.GetBody(), m.GetEndOfStream(), true)
	}
	return s.reply(observe, bodyResponse(&extprocv3.CommonResponse{}, nil, true))
}

// reject answers err as an immediate response.
func (s *stream) reject(err error) error {
	return s.immediate(decide.Reject(err))
}

func (s *stream) immediate(r decide.Response) error {
	if name := decide.RejectionStat(r.Status); name != "" {
		s.stats.countRejection(name)
	}
	return s.send(immediateResponse(r))
}

// end runs once when the stream is over, however it ended.
func (s *stream) end() {
	if s.endpoint != nil {
		s.endpoint.Release()
		s.endpoint = nil
		s.stats.inFlight.Add(-1)
	}
}

// headerList reads Envoy's header list; keys arrive lower-case.
type headerList []*corev3.HeaderValue

var _ router.Headers = headerList(nil)

func (h headerList) Get(key string) (string, bool) {
	for _, hv := range h {
		if hv.GetKey() == key {
			if v := hv.GetRawValue(); len(v) > 0 {
				return string(v), true
			}
			return hv.GetValue(), true
		}
	}
	return "", false
}
