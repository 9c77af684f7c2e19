package translator

import (
	"fmt"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inflow-gateway/inflow/filter/protocol"
)

// replyClass is one kind of Envoy local reply and the OpenAI error it
// becomes. OpenAI SDKs read {"error":{"message","type","param","code"}};
// Envoy's own replies (no route, no healthy upstream, connect failures,
// its buffer and header limits, timeouts) are plain text without this.
type replyClass struct {
	// status matches exactly; with orAbove, any status >= it.
	status  uint32
	orAbove bool
	// rewrite, when set, replaces the status.
	rewrite uint32
	typ     string
	code    string // "" is JSON null
	// message may use %LOCAL_REPLY_BODY%, Envoy's text (never a secret).
	message string
}

// contentTypeJSON is what OpenAI clients expect an error body to be.
const contentTypeJSON = "application/json"

// envoyReplies, first match wins, after the filter's own replies.
var envoyReplies = []replyClass{
	{status: 400, typ: "invalid_request_error", code: "bad_request", message: "the gateway could not read this request: %LOCAL_REPLY_BODY%"},
	// Envoy's only local 401 here is the credential injector finding no
	// key in its secret file: the gateway's fault, not the client's key.
	{status: 401, rewrite: 503, typ: "server_error", code: "backend_credential_unavailable",
		message: "the gateway has no usable API key for this backend (its secret file is missing or empty)"},
	{status: 403, typ: "permission_error", code: "forbidden", message: "the gateway refused this request: %LOCAL_REPLY_BODY%"},
	{status: 404, typ: "invalid_request_error", code: "not_found",
		message: "no route for this request: use an OpenAI-style /v1/ path and a configured model"},
	{status: 408, typ: "invalid_request_error", code: "request_timeout", message: "the request did not arrive in time"},
	{status: 413, typ: "invalid_request_error", code: "request_too_large", message: "the request body is larger than this gateway accepts"},
	{status: 429, typ: "rate_limit_error", code: "rate_limit_exceeded", message: "the gateway is overloaded; retry later: %LOCAL_REPLY_BODY%"},
	{status: 431, typ: "invalid_request_error", code: "request_headers_too_large", message: "the request headers are larger than this gateway accepts"},
	{status: 500, typ: "server_error", code: "internal_error", message: "the gateway failed to process the request"},
	{status: 502, typ: "server_error", code: "bad_gateway", message: "the upstream sent an invalid response: %LOCAL_REPLY_BODY%"},
	{status: 503, typ: "server_error", code: "service_unavailable", message: "the upstream is unavailable: %LOCAL_REPLY_BODY%"},
	{status: 504, typ: "server_error", code: "timeout", message: "the upstream did not answer in time"},
	{status: 500, orAbove: true, typ: "server_error", message: "the gateway failed to process the request: %LOCAL_REPLY_BODY%"},
	{status: 400, orAbove: true, typ: "invalid_request_error", message: "the gateway rejected this request: %LOCAL_REPLY_BODY%"},
}

// localReplyConfig maps Envoy's local replies to OpenAI errors and leaves
// the filter's alone (CONTRACTS.md item 4). Envoy runs every local reply
// through these mappers, a filter's included, so the first one matches the
// marker the filter sets before it replies (io.inflow/openai_reply) and
// changes nothing. match_if_key_not_found must be false: it defaults to
// true, which would make this mapper swallow every reply.
func localReplyConfig() (*hcmv3.LocalReplyConfig, error) { return LocalReplyConfig(nil) }

// LocalReplyConfig is localReplyConfig with Envoy's replies mapped only
// for requests scope matches (nil: all). Envoy Gateway's listeners also
// serve non-inference routes, whose replies stay as Envoy Gateway makes
// them: InferenceReplies is the scope for those.
func LocalReplyConfig(scope *accesslogv3.AccessLogFilter) (*hcmv3.LocalReplyConfig, error) {
	own := &hcmv3.ResponseMapper{Filter: &accesslogv3.AccessLogFilter{
		FilterSpecifier: &accesslogv3.AccessLogFilter_MetadataFilter{MetadataFilter: &accesslogv3.MetadataFilter{
			Matcher: &matcherv3.MetadataMatcher{
				Filter: protocol.MetadataNamespaceInflow,
				Path:   []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: protocol.MetadataKeyOpenAIReply}}},
				Value:  &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_BoolMatch{BoolMatch: true}},
			},
			MatchIfKeyNotFound: wrapperspb.Bool(false),
		}},
	}}
	cfg := &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{own}}
	for _, c := range envoyReplies {
		m, err := c.mapper()
		if err != nil {
			return nil, err
		}
		if scope != nil {
			m.Filter = &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_AndFilter{
				AndFilter: &accesslogv3.AndFilter{Filters: []*accesslogv3.AccessLogFilter{scope, m.GetFilter()}},
			}}
		}
		cfg.Mappers = append(cfg.Mappers, m)
	}
	if err := cfg.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%w: local_reply_config: %w", ErrTranslate, err)
	}
	return cfg, nil
}

// InferenceReplies matches the requests the filter took as inference
// requests: it sets x-ai-eg-model on each of them before routing, and
// removes a client-sent one from every request.
func InferenceReplies() *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_HeaderFilter{HeaderFilter: &accesslogv3.HeaderFilter{
		Header: &routev3.HeaderMatcher{Name: protocol.HeaderModel, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}},
	}}}
}

func (c replyClass) mapper() (*hcmv3.ResponseMapper, error) {
	code := structpb.NewNullValue()
	if c.code != "" {
		code = structpb.NewStringValue(c.code)
	}
	body, err := structpb.NewStruct(map[string]any{"error": map[string]any{
		"message": c.message, "type": c.typ, "param": nil, "code": nil,
	}})
	if err != nil {
		return nil, fmt.Errorf("%w: local reply %d: %w", ErrTranslate, c.status, err)
	}
	body.GetFields()["error"].GetStructValue().GetFields()["code"] = code
	op := accesslogv3.ComparisonFilter_EQ
	if c.orAbove {
		op = accesslogv3.ComparisonFilter_GE
	}
	m := &hcmv3.ResponseMapper{
		Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
			StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
				Op:    op,
				Value: &corev3.RuntimeUInt32{DefaultValue: c.status},
			}},
		}},
		BodyFormatOverride: &corev3.SubstitutionFormatString{
			Format:      &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: body},
			ContentType: contentTypeJSON,
		},
	}
	if c.rewrite != 0 {
		m.StatusCode = wrapperspb.UInt32(c.rewrite)
	}
	return m, nil
}
