package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inflow-gateway/inflow/e2e/harness"
)

// routerOnly is a listener "l" with no golang filter, every path to the
// static cluster "b" (edit adjusts the HCM, cluster the cluster).
func routerOnly(t *testing.T, b *harness.Backend, edit func(*hcmv3.HttpConnectionManager), cluster func(*clusterv3.Cluster)) *harness.Host {
	c := staticCluster(t, "b", b.Addr)
	if cluster != nil {
		cluster(c)
	}
	a := startADS(t)
	setADS(t, a, "1", resources{}.
		add(resource.ListenerType, listener(t, "l", "r", edit)).
		add(resource.RouteType, routeConfig("r", prefixRoute("all", "/", "b"))).
		add(resource.ClusterType, c))
	return startXDSHost(t, a.Addr, harness.XDSHostOptions{Listener: "l"})
}

// HTTP/1.0 is refused with 426 unless accept_http_10
// (ServerConnectionImpl::checkProtocolVersion, http1/codec_impl.cc:1177-1192),
// and a request without a host is a 400 (conn_manager_impl.cc:1354-1575).
func TestHTTP10AndMissingHost(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	h := routerOnly(t, b, nil, nil)
	rc := dialRaw(t, h.Addr)
	rc.write("GET /x HTTP/1.0\r\nhost: x\r\n\r\n")
	if resp := rc.response(nil); resp.StatusCode != http.StatusUpgradeRequired || !rc.closed() {
		t.Errorf("HTTP/1.0: %d (closed %v), want 426 and the connection closed", resp.StatusCode, rc.closed())
	}
	rc = dialRaw(t, h.Addr)
	rc.write("GET /x HTTP/1.1\r\n\r\n")
	if resp := rc.response(nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no host: %d, want 400", resp.StatusCode)
	}
	noBackendGot(t, b)

	h10 := routerOnly(t, b, func(hcm *hcmv3.HttpConnectionManager) {
		hcm.HttpProtocolOptions = &corev3.Http1ProtocolOptions{AcceptHttp_10: true, DefaultHostForHttp_10: "d.example"}
	}, nil)
	rc = dialRaw(t, h10.Addr)
	rc.write("GET /x HTTP/1.0\r\n" + testIDHeader + ": h10\r\n\r\n")
	if resp := rc.response(nil); resp.StatusCode != 200 || !rc.closed() {
		t.Errorf("HTTP/1.0 accepted: %d (closed %v), want 200 and a close (no keep-alive)", resp.StatusCode, rc.closed())
	}
	if _, r := received(t, "h10", b); r.Host != "d.example" {
		t.Errorf("HTTP/1.0 without host reached the upstream as %q, want default_host_for_http_10", r.Host)
	}
}

// max_requests bounds the requests in flight to a cluster: one more is a
// 503 UO (ConnPoolImplBase::newStreamImpl, conn_pool/conn_pool_base.cc:242-250).
func TestCircuitBreakerMaxRequests(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	b.HangOn = "HANG"
	h := routerOnly(t, b, nil, func(c *clusterv3.Cluster) {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			MaxRequests: wrapperspb.UInt32(1)}}}
	})
	hung := dialRaw(t, h.Addr)
	hung.write("POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nHANG")
	waitStat(t, h, "cluster.b.upstream_rq_active", func(v int64) bool { return v == 1 })
	resp, body, err := getWith(t, h, nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "overflow") {
		t.Fatalf("second request: %v %q %v, want 503 overflow", resp, body, err)
	}
	if n := stat(t, h, "cluster.b.upstream_rq_pending_overflow"); n != 1 {
		t.Errorf("upstream_rq_pending_overflow = %d, want 1", n)
	}
}

// request_timeout ends a request that does not arrive in time with 408;
// stream_idle_timeout one whose upstream goes quiet with 504 once the
// request is complete (conn_manager_impl.cc:1061-1077).
func TestRequestAndIdleTimeouts(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	b.HangOn = "HANG"
	h := routerOnly(t, b, func(hcm *hcmv3.HttpConnectionManager) {
		hcm.RequestTimeout = durationpb.New(300 * time.Millisecond)
		hcm.StreamIdleTimeout = durationpb.New(600 * time.Millisecond)
	}, nil)
	rc := dialRaw(t, h.Addr)
	rc.write("POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
	if resp := rc.response(nil); resp.StatusCode != http.StatusRequestTimeout || bodyOf(resp) != "request timeout" {
		t.Errorf("an incomplete request: %d, want 408 request timeout", resp.StatusCode)
	}
	rc = dialRaw(t, h.Addr)
	rc.write("POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nHANG")
	if resp := rc.response(nil); resp.StatusCode != http.StatusGatewayTimeout || bodyOf(resp) != "stream timeout" {
		t.Errorf("a quiet upstream: %d, want 504 stream timeout", resp.StatusCode)
	}
	if n := stat(t, h, "http.l.downstream_rq_timeout"); n != 1 {
		t.Errorf("downstream_rq_timeout = %d, want 1", n)
	}
	if n := stat(t, h, "http.l.downstream_rq_idle_timeout"); n != 1 {
		t.Errorf("downstream_rq_idle_timeout = %d, want 1", n)
	}
}
