package extproc

import (
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/inflow-gateway/inflow/filter/decide"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// immediateDetails is the local reply's %RESPONSE_CODE_DETAILS%.
const immediateDetails = "inflow"

func headersResponse(mut *extprocv3.HeaderMutation, md *structpb.Struct) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
			Response: &extprocv3.CommonResponse{HeaderMutation: mut},
		}},
		DynamicMetadata: md,
	}
}

func bodyResponse(common *extprocv3.CommonResponse, md *structpb.Struct, response bool) *extprocv3.ProcessingResponse {
	r := &extprocv3.ProcessingResponse{DynamicMetadata: md}
	body := &extprocv3.BodyResponse{Response: common}
	if response {
		r.Response = &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: body}
	} else {
		r.Response = &extprocv3.ProcessingResponse_RequestBody{RequestBody: body}
	}
	return r
}

func streamedBody(chunk []byte, endOfStream, response bool) *extprocv3.ProcessingResponse {
	return bodyResponse(&extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
		Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{
			Body: chunk, EndOfStream: endOfStream,
		}},
	}}, nil, response)
}

// immediateResponse is Inflow's own reply. Its metadata marks it as
// already OpenAI-shaped, as the filter marks its local replies, so
// local_reply_config mappers leave it alone (CONTRACTS.md item 4; Envoy
// applies it when metadata_options receives the io.inflow namespace).
func immediateResponse(r decide.Response) *extprocv3.ProcessingResponse {
	// Envoy's local reply is text/plain unless the headers say otherwise.
	headers := []*corev3.HeaderValueOption{setHeader(decide.HeaderContentType, decide.ContentTypeJSON)}
	if r.Allow != "" {
		headers = append(headers, setHeader(decide.HeaderAllow, r.Allow))
	}
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(r.Status)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: headers},
			Body:    r.Body,
			Details: immediateDetails,
		}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			protocol.MetadataNamespaceInflow: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
				protocol.MetadataKeyOpenAIReply: structpb.NewBoolValue(true),
			}}),
		}},
	}
}

// setHeader replaces every value of key (ext_proc's default when append
// is unset).
func setHeader(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, RawValue: []byte(value)}}
}

// stripRouting removes the routing headers a client sent; nil when it
// sent none. Removing them changes what routes match, hence the cleared
// route cache.
func stripRouting(h headerList) *extprocv3.HeaderMutation {
	var remove []string
	for _, name := range decide.RoutingHeaders {
		if _, ok := h.Get(name); ok {
			remove = append(remove, name)
		}
	}
	if remove == nil {
		return nil
	}
	return &extprocv3.HeaderMutation{RemoveHeaders: remove}
}

// routeMutation is the header side of a routing decision: the model
// header routes match, the destination header (or its removal, so a
// client-sent one never survives), and content-length when the body
// changed and the request had one.
func routeMutation(rt *decide.Route, bodyLen int, hadContentLength bool) *extprocv3.HeaderMutation {
	m := &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(protocol.HeaderModel, rt.Model.Name)}}
	if rt.Destination != "" {
		m.SetHeaders = append(m.SetHeaders, setHeader(protocol.HeaderDestination, rt.Destination))
	} else {
		m.RemoveHeaders = []string{protocol.HeaderDestination}
	}
	if rt.Backend != "" {
		m.SetHeaders = append(m.SetHeaders, setHeader(protocol.HeaderBackend, rt.Backend))
	}
	if rt.Edits.Any() && hadContentLength {
		m.SetHeaders = append(m.SetHeaders, setHeader(decide.HeaderContentLength, strconv.Itoa(bodyLen)))
	}
	return m
}

// destinationMetadata is the envoy.lb namespace with the endpoint list;
// nil for none.
func destinationMetadata(value string) *structpb.Struct {
	if value == "" {
		return nil
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		protocol.MetadataNamespaceLB: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			protocol.MetadataKeyDestination: structpb.NewStringValue(value),
		}}),
	}}
}
