package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// errorPrefix starts the response-code details of the replies the filter
// makes itself (Envoy: ErrorPrefix, "ext_proc_error").
const errorPrefix = "ext_proc_error"

// filter is one HTTP request's ext_proc client.
type filter struct {
	api.PassThroughStreamFilter
	cfg *config
	cb  api.FilterCallbackHandler

	s *grpcStream
	// complete: no more messages to or from the server for this request
	// (Envoy's processing_complete_), after an immediate response, an
	// error with failure_mode_allow, or the server closing the stream.
	complete bool
	first    bool // the first message (with protocol_config) is sent

	dir         direction // of the phase being processed
	reqHeaders  api.RequestHeaderMap
	respHeaders api.ResponseHeaderMap
	// Full-duplex request state: the headers response arrived; the
	// streamed body responses so far, and whether the last one came.
	headersAnswered bool
	body            []byte
	bodyDone        bool
}

func factory(c interface{}, cb api.FilterCallbackHandler) api.StreamFilter {
	return &filter{cfg: c.(*config), cb: cb}
}

// outcome is what a server message means for the phase waiting on it.
type outcome int

const (
	proceed  outcome = iota // continue the phase (mutations applied)
	replied                 // a local reply was sent: stop
	finished                // processing is over: continue unmodified
)

// message builds a ProcessingRequest; the first carries protocol_config
// and, on the request path, the forwarded metadata.
func (f *filter) message(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingRequest {
	if !f.first {
		f.first = true
		m.ProtocolConfig = &extprocv3.ProtocolConfiguration{
			RequestBodyMode:  f.cfg.requestBody,
			ResponseBodyMode: f.cfg.responseBody,
		}
	}
	return m
}

func (f *filter) DecodeHeaders(h api.RequestHeaderMap, endStream bool) api.StatusType {
	f.dir, f.reqHeaders = decode, h
	f.s = openStream(f.cfg)
	m := f.message(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: headerMap(h), EndOfStream: endStream},
	}})
	m.MetadataContext = f.forwardedMetadata()
	f.s.send(m)
	// Envoy removes content-length after sending the headers in the modes
	// where a body mutation could change the length later.
	if f.cfg.requestBody == modeFullDuplex && !f.cfg.allowContentLength {
		h.Del("content-length")
	}
	if f.cfg.requestBody == modeFullDuplex && !endStream {
		// Body chunks go to the server as they come; the headers response
		// is applied when it arrives (DecodeData).
		return api.StopAndBufferWatermark
	}
	go f.async(decode, func() api.StatusType {
		switch f.await(true, f.onRequestHeaders) {
		case replied:
			return api.LocalReply
		case finished:
			return api.Continue
		}
		if !endStream && f.cfg.requestBody == modeBuffered {
			return api.StopAndBuffer
		}
		f.requestDone()
		return api.Continue
	})
	return api.Running
}

func (f *filter) DecodeData(buf api.BufferInstance, endStream bool) api.StatusType {
	if f.complete || f.s == nil {
		return api.Continue
	}
	f.dir = decode
	switch f.cfg.requestBody {
	case modeBuffered:
		// The whole body: at end of stream, or just before trailers.
		f.s.send(bodyMessage(buf.Bytes(), endStream, false))
		go f.async(decode, func() api.StatusType {
			switch f.await(true, func(r *extprocv3.ProcessingResponse) (outcome, error) { return f.onBufferedBody(r, buf) }) {
			case replied:
				return api.LocalReply
			}
			f.requestDone()
			return api.Continue
		})
		return api.Running
	case modeFullDuplex:
		f.s.send(bodyMessage(buf.Bytes(), endStream, false))
		if !endStream {
			// Apply what the server already said, without waiting.
			for {
				select {
				case r := <-f.s.in:
					switch f.take(r, f.onDuplex) {
					case replied:
						return api.LocalReply
					case finished:
						return api.Continue
					}
					continue
				default:
				}
				break
			}
			return api.StopNoBuffer // the chunk is the server's now
		}
		go f.async(decode, func() api.StatusType {
			for !f.complete && !(f.headersAnswered && f.bodyDone) {
				if f.await(false, f.onDuplex) == replied {
					return api.LocalReply
				}
			}
			if !f.bodyDone {
				// Processing ended early: the chunks sent are gone, as in Envoy.
				return api.Continue
			}
			if err := buf.Set(f.body); err != nil {
				f.errorReply(fmt.Errorf("setting the body: %w", err))
				return api.LocalReply
			}
			f.requestDone()
			return api.Continue
		})
		return api.Running
	}
	return api.Continue
}

func (f *filter) DecodeTrailers(api.RequestTrailerMap) api.StatusType {
	if f.complete || f.s == nil || !f.cfg.sendRequestTrailers {
		return api.Continue
	}
	// The host cannot deliver request trailers from the wire (README),
	// so this path is never reached; fail loudly if it ever is.
	return f.replyNow(f.cfg.statusOnError, "", errorPrefix+"_request_trailers_unsupported_by_test_client")
}

// requestDone half-closes the stream when nothing of the response goes
// to the server, as Envoy closes it after the last response it expects.
func (f *filter) requestDone() {
	if !f.cfg.sendResponseHeaders && f.cfg.responseBody == modeNone {
		f.s.closeSend()
	}
}

func (f *filter) OnDestroy(api.DestroyReason) {
	if f.s != nil {
		f.s.close()
	}
}

type direction bool

const (
	decode direction = false
	encode direction = true
)

// callbacks are the phase callbacks of a direction.
func (f *filter) callbacks(d direction) api.FilterProcessCallbacks {
	if d == encode {
		return f.cb.EncoderFilterCallbacks()
	}
	return f.cb.DecoderFilterCallbacks()
}

// async runs a phase's wait off the worker thread and resumes the phase
// with its status (LocalReply: the reply was already sent).
func (f *filter) async(d direction, phase func() api.StatusType) {
	f.dir = d
	defer f.callbacks(d).RecoverPanic()
	if st := phase(); st != api.LocalReply {
		f.callbacks(d).Continue(st)
	}
}

// await waits for the server's next message (with the message timeout
// when timed) and hands it to handle.
func (f *filter) await(timed bool, handle func(*extprocv3.ProcessingResponse) (outcome, error)) outcome {
	var timeout <-chan time.Time
	if timed && f.cfg.messageTimeout > 0 {
		t := time.NewTimer(f.cfg.messageTimeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case r := <-f.s.in:
		return f.take(r, handle)
	case <-timeout:
		inc(f.cfg.stats.messageTimeouts)
		return f.fail(504, errorPrefix+"_per-message_timeout_exceeded")
	}
}

// take applies one received message or stream end (Filter::onReceiveMessage,
// onGrpcError, onGrpcClose).
func (f *filter) take(r received, handle func(*extprocv3.ProcessingResponse) (outcome, error)) outcome {
	switch {
	case r.err == io.EOF:
		// The server closed the stream: it needs nothing more.
		inc(f.cfg.stats.streamsClosed)
		f.complete = true
		return finished
	case r.err != nil:
		inc(f.cfg.stats.streamsFailed)
		st := status.Convert(r.err)
		return f.fail(f.cfg.statusOnError, fmt.Sprintf("%s_gRPC_error_%d{%s}", errorPrefix, st.Code(), st.Message()))
	}
	if ir := r.resp.GetImmediateResponse(); ir != nil && !f.cfg.disableImmediate {
		f.setMetadata(r.resp)
		f.complete = true
		f.s.close()
		inc(f.cfg.stats.immediateResponses)
		return f.immediate(ir)
	}
	o, err := handle(r.resp)
	if err == errSpurious {
		inc(f.cfg.stats.spurious)
		return f.fail(f.cfg.statusOnError, err.Error())
	}
	if err != nil {
		return f.errorReply(err)
	}
	return o
}

// fail ends processing after an error: with failure_mode_allow the
// request goes on unmodified, otherwise it gets status.
func (f *filter) fail(code int, details string) outcome {
	f.complete = true
	f.s.close()
	if f.cfg.failureModeAllow {
		inc(f.cfg.stats.failureModeAllowed)
		return finished
	}
	f.replyNow(code, "", details)
	return replied
}

// errorReply answers a rejected mutation (Filter::handleErrorResponse).
func (f *filter) errorReply(err error) outcome {
	f.complete = true
	f.s.close()
	f.replyNow(f.cfg.statusOnError, "", strings.ReplaceAll(err.Error(), " ", "_"))
	return replied
}

var errSpurious = fmt.Errorf("spurious message")

func (f *filter) onRequestHeaders(r *extprocv3.ProcessingResponse) (outcome, error) {
	hr := r.GetRequestHeaders()
	if hr == nil {
		return 0, errSpurious
	}
	return f.applyCommon(r, hr.GetResponse(), f.reqHeaders, true, false)
}

func (f *filter) onBufferedBody(r *extprocv3.ProcessingResponse, buf api.BufferInstance) (outcome, error) {
	br := r.GetRequestBody()
	if br == nil {
		return 0, errSpurious
	}
	c := br.GetResponse()
	if c.GetBodyMutation().GetStreamedResponse() != nil {
		return 0, fmt.Errorf("%w: streamed_response is received while body_mode_ is not FULL_DUPLEX_STREAMED", errSpurious)
	}
	o, err := f.applyCommon(r, c, f.reqHeaders, true, false)
	if err != nil || c.GetBodyMutation() == nil {
		return o, err
	}
	return o, applyBodyMutation(c.GetBodyMutation(), buf, f.reqHeaders)
}

// onDuplex takes a message of a full-duplex request: the headers
// response first, then streamed body chunks up to end_of_stream.
func (f *filter) onDuplex(r *extprocv3.ProcessingResponse) (outcome, error) {
	if hr := r.GetRequestHeaders(); hr != nil && !f.headersAnswered {
		f.headersAnswered = true
		return f.applyCommon(r, hr.GetResponse(), f.reqHeaders, true, true)
	}
	br := r.GetRequestBody()
	if br == nil || !f.headersAnswered || f.bodyDone {
		return 0, errSpurious
	}
	sr := br.GetResponse().GetBodyMutation().GetStreamedResponse()
	if sr == nil {
		return 0, fmt.Errorf("%w: Normal body mutation response is received while body_mode_ is FULL_DUPLEX_STREAMED", errSpurious)
	}
	f.setMetadata(r)
	f.clearRouteCache(br.GetResponse())
	f.body = append(f.body, sr.GetBody()...)
	f.bodyDone = sr.GetEndOfStream()
	return proceed, nil
}

// applyCommon applies a CommonResponse's headers side and the message's
// metadata. CONTINUE_AND_REPLACE is not implemented.
func (f *filter) applyCommon(r *extprocv3.ProcessingResponse, c *extprocv3.CommonResponse, h headerWriter,
	request, dropContentLength bool) (outcome, error) {
	f.setMetadata(r)
	if c.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
		return 0, fmt.Errorf("%s_continue_and_replace_unsupported_by_test_client", errorPrefix)
	}
	if m := c.GetHeaderMutation(); m != nil {
		rejected, err := applyHeaderMutation(m, h, dropContentLength)
		for range rejected {
			inc(f.cfg.stats.rejectedMutations)
		}
		if err != nil {
			return 0, err
		}
	}
	if request {
		f.clearRouteCache(c)
	}
	return proceed, nil
}

func (f *filter) clearRouteCache(c *extprocv3.CommonResponse) {
	if c.GetClearRouteCache() && !f.cfg.disableClearRouteCache {
		f.cb.ClearRouteCache()
	}
}

// setMetadata copies the response's dynamic metadata, for the receiving
// namespaces only (none unless metadata_options says so, as in Envoy).
func (f *filter) setMetadata(r *extprocv3.ProcessingResponse) {
	for ns, v := range r.GetDynamicMetadata().GetFields() {
		if !contains(f.cfg.receiving, ns) {
			continue
		}
		md := f.cb.StreamInfo().DynamicMetadata()
		for k, val := range v.GetStructValue().GetFields() {
			md.Set(ns, k, val.AsInterface())
		}
	}
}

// forwardedMetadata is the dynamic metadata of the forwarding namespaces.
func (f *filter) forwardedMetadata() *corev3.Metadata {
	if len(f.cfg.forwarding) == 0 {
		return nil
	}
	md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
	for _, ns := range f.cfg.forwarding {
		if s, err := structpb.NewStruct(f.cb.StreamInfo().DynamicMetadata().Get(ns)); err == nil && len(s.GetFields()) > 0 {
			md.FilterMetadata[ns] = s
		}
	}
	return md
}

// immediate sends the server's ImmediateResponse (Filter::sendImmediateResponse).
func (f *filter) immediate(ir *extprocv3.ImmediateResponse) outcome {
	code := int(ir.GetStatus().GetCode())
	if code < 200 || code > 599 { // MutationUtils::isValidHttpStatus
		code = 200 // DefaultImmediateStatus
	}
	headers := map[string][]string{}
	if m := ir.GetHeaders(); m != nil {
		rejected, _ := applyHeaderMutation(m, mapHeaders(headers), false)
		for range rejected {
			inc(f.cfg.stats.rejectedMutations)
		}
	}
	f.sendLocalReply(code, string(ir.GetBody()), headers, strings.ReplaceAll(ir.GetDetails(), " ", "_"))
	return replied
}

func (f *filter) replyNow(code int, body, details string) api.StatusType {
	f.sendLocalReply(code, body, nil, details)
	return api.LocalReply
}

// sendLocalReply replies in the current phase's direction; -1 is "no
// gRPC status".
func (f *filter) sendLocalReply(code int, body string, headers map[string][]string, details string) {
	f.callbacks(f.dir).SendLocalReply(code, body, headers, -1, details)
}

func bodyMessage(b []byte, endStream, response bool) *extprocv3.ProcessingRequest {
	body := &extprocv3.HttpBody{Body: append([]byte(nil), b...), EndOfStream: endStream}
	if response {
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: body}}
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: body}}
}

// headerMap is Envoy's view of h for the server: every header, values as
// raw_value.
func headerMap(h api.HeaderMap) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	h.RangeWithCopy(func(k, v string) bool {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
		return true
	})
	return m
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
