package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/inflow-gateway/inflow/e2e/harness"
)

// Request trailers reach the filter chain through HTTP/1 chunked encoding
// when the HCM enables them (http_protocol_options.enable_trailers, as
// Envoy's codec does; they are dropped otherwise). That is the test-only way
// to send what an HTTP/2 client sends as HEADERS then trailers.

func trailerState(t *testing.T, b *harness.Backend, enable bool) resources {
	edit := func(hcm *hcmv3.HttpConnectionManager) {
		hcm.HttpProtocolOptions = &corev3.Http1ProtocolOptions{EnableTrailers: enable}
	}
	return resources{}.
		add(resource.ListenerType, listener(t, "l", "r", edit, golangInline(t, inflowFilterConfig(t, inflowConfig(0, b))))).
		add(resource.RouteType, routeConfig("r", prefixRoute("pool", "/", "pool/p1"))).
		add(resource.ClusterType, originalDstCluster("pool/p1"))
}

// chunkedPost sends a chunked POST with body (possibly empty) and trailers.
func chunkedPost(t *testing.T, addr, body string) *http.Response {
	return chunkedPostTrailer(t, addr, body, "x-trace: t1")
}

func chunkedPostTrailer(t *testing.T, addr, body, trailer string) *http.Response {
	rc := dialRaw(t, addr)
	req := "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n" +
		"transfer-encoding: chunked\r\ntrailer: x-trace\r\n" + testIDHeader + ": trl\r\n\r\n"
	if body != "" {
		req += fmt.Sprintf("%x\r\n%s\r\n", len(body), body)
	}
	rc.write(req + "0\r\n" + trailer + "\r\n\r\n")
	return rc.response(&http.Request{Method: http.MethodPost})
}

func TestRequestTrailers(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	a := startADS(t)
	setADS(t, a, "1", trailerState(t, b, true))
	h := startXDSHost(t, a.Addr, harness.XDSHostOptions{Listener: "l"})

	// headers then trailers, no DATA: DecodeData never runs; DecodeTrailers
	// must refuse the buffered inference request
	resp := chunkedPost(t, h.Addr, "")
	body := bodyOf(resp)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "missing_body") {
		t.Fatalf("no body, trailers: status %d %s, want the filter's 400 missing_body", resp.StatusCode, body)
	}
	noBackendGot(t, b)

	// a body then trailers: routed, trailers passed upstream
	resp = chunkedPost(t, h.Addr, chatBody("llama", "hi"))
	if resp.StatusCode != 200 {
		t.Fatalf("body and trailers: status %d %s", resp.StatusCode, bodyOf(resp))
	}
	_, r := received(t, "trl", b)
	checkRouted(t, b, r)
	if got := r.Trailer.Get("x-trace"); got != "t1" {
		t.Errorf("upstream trailer x-trace = %q, want t1", got)
	}

	// trailers count against max_request_headers_kb like headers
	// (ConnectionImpl::checkMaxHeadersSize, http1/codec_impl.cc:603-614)
	resp = chunkedPostTrailer(t, h.Addr, chatBody("llama", "hi"), "x-big: "+strings.Repeat("a", 61<<10))
	if body := bodyOf(resp); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 61 KiB trailer: status %d %s, want 431", resp.StatusCode, body)
	}

	// without enable_trailers the codec drops them: an empty body, which
	// the parser refuses differently
	setADS(t, a, "2", trailerState(t, b, false))
	awaitAccepted(t, h, "2", resource.ListenerType)
	h.Addr, _ = h.ListenerAddr(testContext(t), "l")
	resp = chunkedPost(t, h.Addr, "")
	if body := bodyOf(resp); resp.StatusCode != http.StatusBadRequest || strings.Contains(body, "missing_body") {
		t.Errorf("trailers disabled: status %d %s, want a 400 from DecodeData, not DecodeTrailers", resp.StatusCode, body)
	}
}
