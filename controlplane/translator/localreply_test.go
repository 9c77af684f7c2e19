package translator_test

import (
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/inflow-gateway/inflow/filter/protocol"
)

func hcmOf(t *testing.T, path string) *hcmv3.HttpConnectionManager {
	t.Helper()
	l := translate(t, path).Listeners[0]
	var hcm hcmv3.HttpConnectionManager
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	return &hcm
}

// firstMatch is Envoy's mapper selection (first match wins) for a local
// reply with status, on a stream the filter did or did not mark.
func firstMatch(t *testing.T, mappers []*hcmv3.ResponseMapper, status uint32, marked bool) int {
	t.Helper()
	for i, m := range mappers {
		switch f := m.GetFilter().GetFilterSpecifier().(type) {
		case *accesslogv3.AccessLogFilter_MetadataFilter:
			mf := f.MetadataFilter
			// Envoy's default for a missing key is to match.
			notFound := mf.GetMatchIfKeyNotFound() == nil || mf.GetMatchIfKeyNotFound().GetValue()
			if mf.GetMatcher().GetFilter() != protocol.MetadataNamespaceInflow || mf.GetMatcher().GetPath()[0].GetKey() != protocol.MetadataKeyOpenAIReply {
				t.Fatalf("mapper %d matches metadata %v", i, mf.GetMatcher())
			}
			if (marked && mf.GetMatcher().GetValue().GetBoolMatch()) || (!marked && notFound) {
				return i
			}
		case *accesslogv3.AccessLogFilter_StatusCodeFilter:
			c := f.StatusCodeFilter.GetComparison()
			v := c.GetValue().GetDefaultValue()
			if (c.GetOp() == accesslogv3.ComparisonFilter_EQ && status == v) || (c.GetOp() == accesslogv3.ComparisonFilter_GE && status >= v) {
				return i
			}
		default:
			t.Fatalf("mapper %d: unexpected filter %T", i, f)
		}
	}
	return -1
}

// Envoy's own local replies come out as OpenAI errors with a fitting type
// and code; the filter's replies, already OpenAI JSON, are left alone.
func TestLocalRepliesAreOpenAIShaped(t *testing.T) {
	lrc := hcmOf(t, fullInput).GetLocalReplyConfig()
	if lrc.GetBodyFormat() != nil {
		t.Fatal("a top-level body_format would re-format the filter's replies too")
	}
	mappers := lrc.GetMappers()
	tests := []struct {
		status    uint32
		marked    bool
		typ, code string // "" type: left alone
		rewriteTo uint32
	}{
		{status: 404, marked: true}, // the filter's model_not_found
		{status: 503, marked: true}, // the filter's no endpoint
		{status: 200, marked: true}, // the filter's model list
		{status: 404, typ: "invalid_request_error", code: "not_found"},
		{status: 413, typ: "invalid_request_error", code: "request_too_large"},
		{status: 431, typ: "invalid_request_error", code: "request_headers_too_large"},
		{status: 503, typ: "server_error", code: "service_unavailable"},
		{status: 504, typ: "server_error", code: "timeout"},
		{status: 500, typ: "server_error", code: "internal_error"},
		{status: 401, typ: "server_error", code: "backend_credential_unavailable", rewriteTo: 503},
		{status: 507, typ: "server_error"},
		{status: 418, typ: "invalid_request_error"},
	}
	for _, tt := range tests {
		i := firstMatch(t, mappers, tt.status, tt.marked)
		if tt.typ == "" {
			if i != 0 || mappers[0].GetBodyFormatOverride() != nil || mappers[0].GetStatusCode() != nil || mappers[0].GetBody() != nil {
				t.Errorf("status %d from the filter: mapper %d would change it", tt.status, i)
			}
			continue
		}
		if i <= 0 {
			t.Errorf("Envoy's %d: matched by mapper %d", tt.status, i)
			continue
		}
		m := mappers[i]
		bf := m.GetBodyFormatOverride()
		e := bf.GetJsonFormat().GetFields()["error"].GetStructValue().GetFields()
		gotCode := e["code"].GetStringValue()
		if e["type"].GetStringValue() != tt.typ || gotCode != tt.code || e["message"].GetStringValue() == "" || e["param"] == nil {
			t.Errorf("Envoy's %d: error %v, want type %q code %q", tt.status, e, tt.typ, tt.code)
		}
		if bf.GetContentType() != "application/json" {
			t.Errorf("Envoy's %d: content type %q", tt.status, bf.GetContentType())
		}
		if got := m.GetStatusCode().GetValue(); got != tt.rewriteTo {
			t.Errorf("Envoy's %d: status rewritten to %d, want %d", tt.status, got, tt.rewriteTo)
		}
	}
}
