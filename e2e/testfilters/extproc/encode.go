package main

import (
	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// The response path: response headers (Envoy's default is SEND) and a
// BUFFERED response body. A FULL_DUPLEX_STREAMED response body is refused
// at config time: the Go filter API cannot inject the server's chunks
// downstream while upstream chunks keep arriving (README).

func (f *filter) EncodeHeaders(h api.ResponseHeaderMap, endStream bool) api.StatusType {
	if f.complete || f.s == nil || !f.cfg.sendResponseHeaders {
		return api.Continue
	}
	f.dir, f.respHeaders = encode, h
	f.s.send(f.message(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap(h), EndOfStream: endStream},
	}}))
	go f.async(encode, func() api.StatusType {
		handle := func(r *extprocv3.ProcessingResponse) (outcome, error) {
			hr := r.GetResponseHeaders()
			if hr == nil {
				return 0, errSpurious
			}
			return f.applyCommon(r, hr.GetResponse(), h, false, false)
		}
		switch f.await(true, handle) {
		case replied:
			return api.LocalReply
		case finished:
			return api.Continue
		}
		if !endStream && f.cfg.responseBody == modeBuffered {
			return api.StopAndBuffer
		}
		f.s.closeSend()
		return api.Continue
	})
	return api.Running
}

func (f *filter) EncodeData(buf api.BufferInstance, endStream bool) api.StatusType {
	if f.complete || f.s == nil || f.cfg.responseBody != modeBuffered {
		return api.Continue
	}
	f.dir = encode
	f.s.send(bodyMessage(buf.Bytes(), endStream, true))
	go f.async(encode, func() api.StatusType {
		handle := func(r *extprocv3.ProcessingResponse) (outcome, error) {
			br := r.GetResponseBody()
			if br == nil || br.GetResponse().GetBodyMutation().GetStreamedResponse() != nil {
				return 0, errSpurious
			}
			o, err := f.applyCommon(r, br.GetResponse(), f.respHeaders, false, false)
			if err != nil || br.GetResponse().GetBodyMutation() == nil {
				return o, err
			}
			return o, applyBodyMutation(br.GetResponse().GetBodyMutation(), buf, f.respHeaders)
		}
		if f.await(true, handle) == replied {
			return api.LocalReply
		}
		f.s.closeSend()
		return api.Continue
	})
	return api.Running
}
