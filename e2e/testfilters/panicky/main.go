// Command panicky is an e2e test filter that panics on request, in the phase
// named by the x-panic request header, so the tests can check the host turns
// the SDK's recovered panic into a 500 and keeps serving:
//
//	x-panic: decode-headers  panic in DecodeHeaders
//	x-panic: decode-data     panic in DecodeData (after StopAndBuffer)
//	x-panic: async           panic in a goroutine (recovered by RecoverPanic)
//	x-panic: encode-headers  panic in EncodeHeaders (response path)
//
// Without the header it exercises the async path instead: DecodeHeaders
// returns Running, a goroutine sets a request header and dynamic metadata and
// calls Continue from a Go thread. The x-body request header exercises the
// streaming body paths of the state machine, upper-casing the request body
// chunk by chunk (same length, so content-length stays right):
//
//	x-body: upper        StopAndBufferWatermark, each chunk edited in DecodeData
//	x-body: upper-async  as above, but DecodeData returns Running and a
//	                     goroutine edits the chunk and calls Continue, so the
//	                     chunks arriving meanwhile are buffered by the host
//
// Two headers exercise the routing inputs of the ORIGINAL_DST cluster:
//
//	x-override: ip:port    SetUpstreamOverrideHost (a 400 reply carries its error)
//	x-lb-endpoint: value   dynamic metadata envoy.lb/x-gateway-destination-endpoint
//
// And x-set: value makes DecodeHeaders Set x-dup to value (Envoy's setCopy
// replaces every copy the client sent); x-clear-route: encode-data makes
// EncodeData call ClearRouteCache, after the response headers went out
// (Envoy has blocked the route cache by then).
//
// Plugin name "panicky".
package main

import (
	"bytes"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"github.com/envoyproxy/envoy/contrib/golang/filters/http/source/go/pkg/http"

	"github.com/inflow-gateway/inflow/filter/protocol"
)

const (
	PluginName  = "panicky"
	PanicHeader = "x-panic"
	// AsyncHeader is set on the request by the goroutine before Continue.
	AsyncHeader = "x-panicky-async"
)

type parser struct{}

func (parser) Parse(*anypb.Any, api.ConfigCallbackHandler) (interface{}, error) {
	return struct{}{}, nil
}
func (parser) Merge(parent, _ interface{}) interface{} { return parent }

type filter struct {
	api.PassThroughStreamFilter
	cb         api.FilterCallbackHandler
	mode       string
	body       string
	clearRoute string
}

func (f *filter) DecodeHeaders(h api.RequestHeaderMap, endStream bool) api.StatusType {
	f.mode, _ = h.Get(PanicHeader)
	f.body, _ = h.Get("x-body")
	f.clearRoute, _ = h.Get("x-clear-route")
	if host, ok := h.Get("x-override"); ok {
		if err := f.cb.DecoderFilterCallbacks().SetUpstreamOverrideHost(host, false); err != nil {
			f.cb.DecoderFilterCallbacks().SendLocalReply(400, err.Error(), nil, 0, "")
			return api.LocalReply
		}
	}
	if v, ok := h.Get("x-set"); ok {
		h.Set("x-dup", v)
	}
	if ep, ok := h.Get("x-lb-endpoint"); ok {
		f.cb.StreamInfo().DynamicMetadata().Set(protocol.MetadataNamespaceLB, protocol.MetadataKeyDestination, ep)
	}
	if f.body != "" && !endStream {
		return api.StopAndBufferWatermark
	}
	switch f.mode {
	case "decode-headers":
		panic("panicky: decode-headers")
	case "decode-data":
		if !endStream {
			return api.StopAndBuffer
		}
	case "async":
		go func() {
			defer f.cb.DecoderFilterCallbacks().RecoverPanic()
			panic("panicky: async")
		}()
		return api.Running
	case "":
		go func() {
			defer f.cb.DecoderFilterCallbacks().RecoverPanic()
			// Off-thread writes are posted to the worker in order, so both
			// land before the Continue that follows them.
			h.Set(AsyncHeader, "1")
			f.cb.StreamInfo().DynamicMetadata().Set("panicky", "async", "1")
			f.cb.DecoderFilterCallbacks().Continue(api.Continue)
		}()
		return api.Running
	}
	return api.Continue
}

func (f *filter) DecodeData(buf api.BufferInstance, _ bool) api.StatusType {
	if f.mode == "decode-data" {
		panic("panicky: decode-data")
	}
	switch f.body {
	case "upper":
		_ = buf.Set(bytes.ToUpper(buf.Bytes()))
	case "upper-async":
		go func() {
			defer f.cb.DecoderFilterCallbacks().RecoverPanic()
			_ = buf.Set(bytes.ToUpper(buf.Bytes()))
			f.cb.DecoderFilterCallbacks().Continue(api.Continue)
		}()
		return api.Running
	}
	return api.Continue
}

func (f *filter) EncodeHeaders(h api.ResponseHeaderMap, _ bool) api.StatusType {
	if f.mode == "encode-headers" {
		panic("panicky: encode-headers")
	}
	h.Set("x-panicky", "ok")
	return api.Continue
}

func (f *filter) EncodeData(api.BufferInstance, bool) api.StatusType {
	if f.clearRoute == "encode-data" {
		f.cb.ClearRouteCache()
	}
	return api.Continue
}

func factory(_ interface{}, cb api.FilterCallbackHandler) api.StreamFilter { return &filter{cb: cb} }

func init() {
	http.RegisterHttpFilterFactoryAndConfigParser(PluginName, factory, parser{})
}

func main() {}
