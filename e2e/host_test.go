package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

func get(t *testing.T, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", url, err)
	}
	return resp, string(body)
}

// A panic anywhere in the filter must become the SDK's 500 panic reply and
// the host must keep serving, on both workers, with parallel clients.
func TestHostSurvivesPanickingFilter(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	h := startHost(t, harness.HostOptions{PluginName: harness.PanickyPlugin, DefaultUpstream: b.Addr, Concurrency: 2})
	modes := []string{"decode-headers", "decode-data", "async", "encode-headers", ""}
	const rounds = 10
	var wg sync.WaitGroup
	errs := make(chan string, rounds*len(modes))
	for r := range rounds {
		for _, mode := range modes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(testContext(t), http.MethodPost, h.URL("/x"), strings.NewReader("body"))
				req.Header.Set("x-panic", mode)
				req.Header.Set(testIDHeader, fmt.Sprintf("%s-%d", mode, r))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- fmt.Sprintf("%q: %v", mode, err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if mode == "" {
					if resp.StatusCode != 200 || resp.Header.Get("x-panicky") != "ok" {
						errs <- fmt.Sprintf("normal request: %d %q", resp.StatusCode, body)
					}
					return
				}
				if resp.StatusCode != 500 || string(body) != "error happened in filter\r\n" {
					errs <- fmt.Sprintf("%q: %d %q, want the 500 panic reply", mode, resp.StatusCode, body)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := stat(t, h, "http.envoyhost.golang.panic_error"); got != 4*rounds {
		t.Errorf("panic_error = %d, want %d", got, 4*rounds)
	}
	// The async path: header and metadata written from a goroutine are
	// applied before its Continue, so the backend sees the header.
	for r := range rounds {
		_, rec := received(t, fmt.Sprintf("-%d", r), b)
		if rec.Header.Get("x-panicky-async") != "1" {
			t.Errorf("request %d: header set from the goroutine missing upstream", r)
		}
	}
	// Panics in the response path happen after the upstream answered; those
	// in the request path must not reach it.
	if got := len(b.Requests()); got != 2*rounds {
		t.Errorf("backend got %d requests, want %d (normal + encode-headers)", got, 2*rounds)
	}
	if resp, _ := get(t, h.URL("/after"), nil); resp.StatusCode != 200 {
		t.Errorf("after the panics: status %d", resp.StatusCode)
	}
}

func TestPassthroughFilterAndMetrics(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	h := startHost(t, harness.HostOptions{PluginName: harness.PassthroughPlugin, DefaultUpstream: b.Addr})
	const n = 20
	for i := range n {
		resp, body := get(t, h.URL(fmt.Sprintf("/p/%d", i)), nil)
		if resp.StatusCode != 200 || body != fmt.Sprintf("b1 /p/%d", i) || resp.Header.Get("x-passthrough") != "1" {
			t.Fatalf("status %d body %q x-passthrough %q", resp.StatusCode, body, resp.Header.Get("x-passthrough"))
		}
	}
	// A metric defined through the config callbacks and incremented in OnLog,
	// which runs after the response is sent: poll for it.
	poll.Eventually(t, fmt.Sprintf("passthrough.requests = %d", n), func() bool { return stat(t, h, "passthrough.requests") >= n })
}

func TestNoUpstream503(t *testing.T) {
	t.Parallel()
	h := startHost(t, harness.HostOptions{PluginName: harness.PassthroughPlugin})
	resp, body := get(t, h.URL("/"), nil)
	if resp.StatusCode != http.StatusServiceUnavailable || body != "no healthy upstream" {
		t.Fatalf("status %d body %q, want 503 no healthy upstream", resp.StatusCode, body)
	}
	// ORIGINAL_DST honours the endpoint header when nothing else chose one.
	b := startBackend(t, "b1")
	resp, body = get(t, h.URL("/h"), map[string]string{protocol.HeaderDestination: b.Addr})
	if resp.StatusCode != 200 || body != "b1 /h" {
		t.Fatalf("routed by header: status %d body %q", resp.StatusCode, body)
	}
}

func TestUpstreamConnectFailure503(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	h := startHost(t, harness.HostOptions{PluginName: harness.PassthroughPlugin, DefaultUpstream: dead})
	resp, body := get(t, h.URL("/"), nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(body, "upstream connect error") {
		t.Fatalf("status %d body %q, want 503 upstream connect error", resp.StatusCode, body)
	}
}

// Bodies larger than the host's read slices reach the filter in several
// chunks: edited one by one (StopAndBufferWatermark), or edited from a
// goroutine while later chunks pile up in the host's buffer (Running in the
// data phase) past its high watermark, which pauses reading until the buffer
// drains, the upstream must get every byte, in order, edited.
func TestStreamingBodyEdits(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	h := startHost(t, harness.HostOptions{PluginName: harness.PanickyPlugin, DefaultUpstream: b.Addr, BufferLimit: 32 << 10})
	var body strings.Builder
	for i := range 20000 { // ~150 KB: about ten 16 KiB slices
		fmt.Fprintf(&body, "line %d;", i)
	}
	for _, mode := range []string{"upper", "upper-async"} {
		req, _ := http.NewRequestWithContext(testContext(t), http.MethodPost, h.URL("/edit"), strings.NewReader(body.String()))
		req.Header.Set("x-body", mode)
		req.Header.Set(testIDHeader, mode)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", mode, resp.StatusCode)
		}
		_, rec := received(t, mode, b)
		if want := strings.ToUpper(body.String()); string(rec.Body) != want {
			t.Errorf("%s: upstream body (%d bytes) differs from the upper-cased request (%d bytes)", mode, len(rec.Body), len(want))
		}
	}
	if stat(t, h, "envoyhost.decode_read_disabled") == 0 {
		t.Error("the async mode never crossed the high watermark: the flow-control path was not exercised")
	}
}

// The ORIGINAL_DST inputs in Envoy's order (original_dst_cluster.cc:32-190):
// the override host if the cluster already knows it, then the envoy.lb
// metadata (one address, or the first of a list value), then the endpoint
// header, then the restored local address (the static mode's default). A
// comma-separated metadata string is not an address: it counts
// original_dst_host_invalid and falls through to the header.
func TestRoutingInputs(t *testing.T) {
	t.Parallel()
	b1, b2, b3 := startBackend(t, "b1"), startBackend(t, "b2"), startBackend(t, "b3")
	h := startHost(t, harness.HostOptions{PluginName: harness.PanickyPlugin, DefaultUpstream: b1.Addr})
	const invalid = "cluster.static.original_dst_host_invalid"
	cases := []struct {
		name    string
		header  map[string]string
		want    string
		invalid int64 // original_dst_host_invalid after the request
	}{
		{"default", nil, "b1", 0},
		{"endpoint header", map[string]string{protocol.HeaderDestination: b2.Addr}, "b2", 0},
		{"metadata beats header", map[string]string{protocol.HeaderDestination: b2.Addr, "x-lb-endpoint": b3.Addr}, "b3", 0},
		{"override host unknown to the cluster: ignored", map[string]string{"x-lb-endpoint": b2.Addr, "x-override": "127.0.0.1:1"}, "b2", 0},
		{"override host the cluster knows beats metadata", map[string]string{"x-lb-endpoint": b2.Addr, "x-override": b3.Addr}, "b3", 0},
		{"metadata list is no address: header", map[string]string{"x-lb-endpoint": b2.Addr + "," + b3.Addr, protocol.HeaderDestination: b3.Addr}, "b3", 1},
		{"header list is no address: default", map[string]string{protocol.HeaderDestination: b2.Addr + "," + b3.Addr}, "b1", 2},
	}
	for _, c := range cases {
		resp, body := get(t, h.URL("/r"), c.header)
		if resp.StatusCode != 200 || resp.Header.Get("x-backend") != c.want {
			t.Errorf("%s: status %d, served by %q (%s), want %s", c.name, resp.StatusCode, resp.Header.Get("x-backend"), body, c.want)
		}
		if got := stat(t, h, invalid); got != c.invalid {
			t.Errorf("%s: %s = %d, want %d", c.name, invalid, got, c.invalid)
		}
	}
	resp, body := get(t, h.URL("/r"), map[string]string{"x-override": "backend.example:80"})
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("override with a host name: status %d %q, want the filter's 400 for CAPIInvalidIPAddress", resp.StatusCode, body)
	}
}

// A filter's Set replaces every copy of a header, as Envoy's setCopy
// (header_map_impl.cc:326-329): a client's duplicate cannot survive it.
func TestSetReplacesEveryCopy(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	h := startHost(t, harness.HostOptions{PluginName: harness.PanickyPlugin, DefaultUpstream: b.Addr})
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, h.URL("/set"), nil)
	req.Header.Add("x-dup", "client-1")
	req.Header.Add("x-dup", "client-2")
	req.Header.Set("x-set", "filter")
	req.Header.Set(testIDHeader, "set")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, r := received(t, "set", b)
	if v := r.Header.Values("x-dup"); len(v) != 1 || v[0] != "filter" {
		t.Errorf("upstream x-dup = %q, want only the filter's value", v)
	}
}
