package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// What Envoy's HTTP connection manager and HTTP/1 codec do with the bytes,
// through the host running the control plane's config: header limits,
// 100-continue, disconnects, early replies, duplicate routing headers, and
// the paths the generated route table catches.

// rawConn is a client connection speaking HTTP/1.1 by hand.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (r *rawConn) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// response reads one response (through its body) off the connection.
func (r *rawConn) response(req *http.Request) *http.Response {
	r.t.Helper()
	resp, err := http.ReadResponse(r.r, req)
	if err != nil {
		r.t.Fatalf("reading a response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

// closed reports whether the server closed the connection.
func (r *rawConn) closed() bool {
	_ = r.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := r.r.ReadByte()
	return err == io.EOF
}

func bodyOf(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func chatBody(model, content string) string {
	b, _ := json.Marshal(map[string]any{"model": model, "messages": []any{map[string]any{"role": "user", "content": content}}})
	return string(b)
}

// Envoy's limits: a request head over max_request_headers_kb (60 KiB) or
// with more than max_headers_count (100) headers is answered 431 and the
// connection closed (http1/codec_impl.cc:571-609).
func TestRequestHeaderLimits431(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	h, _ := startInflow(t, cpConfig(inflowConfig(0, b)), harness.XDSHostOptions{})
	cases := []struct {
		name  string
		extra string
		code  int
	}{
		{"100 headers pass", strings.Repeat("x-h: v\r\n", 100-2), 404},
		{"101 headers", strings.Repeat("x-h: v\r\n", 101-2), 431},
		{"a 59 KiB header passes", "x-big: " + strings.Repeat("a", 59*1024) + "\r\n", 404},
		{"a 61 KiB header", "x-big: " + strings.Repeat("a", 61*1024) + "\r\n", 431},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := dialRaw(t, h.Addr)
			// host and user-agent are the other two headers
			rc.write("GET /nowhere HTTP/1.1\r\nhost: x\r\nuser-agent: raw\r\n" + c.extra + "\r\n")
			resp := rc.response(nil)
			if resp.StatusCode != c.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.code, bodyOf(resp))
			}
			if c.code == 431 && !rc.closed() {
				t.Error("the connection stayed open after a codec error")
			}
		})
	}
	if n := stat(t, h, "http.public.downstream_cx_protocol_error"); n != 2 {
		t.Errorf("downstream_cx_protocol_error = %d, want 2", n)
	}
}

// curl sends Expect: 100-continue above 1 MiB: the HCM answers 100
// Continue once, itself, and removes Expect so the upstream does not
// answer it again (conn_manager_impl.cc:1431-1442).
func TestExpect100ContinueIsAnsweredOnceAndRemoved(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	h, _ := startInflow(t, cpConfig(inflowConfig(4<<20, b)), harness.XDSHostOptions{})
	body := chatBody("llama", strings.Repeat("long prompt ", 100_000)) // 1.2 MB
	rc := dialRaw(t, h.Addr)
	rc.write(fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"+
		"content-length: %d\r\nexpect: 100-continue\r\n%s: cont\r\n\r\n", len(body), testIDHeader))
	line, err := rc.r.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first line %q (%v), want the interim 100 Continue", line, err)
	}
	if blank, _ := rc.r.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("100 Continue not followed by an empty line: %q", blank)
	}
	rc.write(body)
	resp := rc.response(&http.Request{Method: http.MethodPost})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, bodyOf(resp))
	}
	_, r := received(t, "cont", b)
	if r.Header.Get("Expect") != "" {
		t.Errorf("the upstream saw Expect: %q", r.Header.Get("Expect"))
	}
	checkRouted(t, b, r)
	if n := stat(t, h, "http.public.downstream_rq_100_continue"); n != 1 {
		t.Errorf("downstream_rq_100_continue = %d", n)
	}
}

// A client that gives up on a hung request resets its stream: the upstream
// request is cancelled and the filter's OnDestroy releases the endpoint,
// which the picker uses again right away.
func TestClientDisconnectReleasesTheEndpointAtOnce(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	b1.HangOn, b2.HangOn = "HANG", "HANG"
	h, _ := startInflow(t, cpConfig(inflowConfig(0, b1, b2)), harness.XDSHostOptions{})
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	c := client(h)
	go func() {
		_, err := c.Chat.Completions.New(ctx, chatParams("llama", "HANG"))
		done <- err
	}()
	// in flight for the filter, and at a backend (the filter counts it
	// before it is sent)
	poll.Eventually(t, "the hung request in flight at a backend", func() bool {
		v, ok := optionalStat(t, h, "inflow_requests_in_flight")
		return ok && v == 1 && len(b1.Requests())+len(b2.Requests()) == 1
	})
	hung := b1
	if len(b2.Requests()) > 0 {
		hung = b2
	}
	cancel()
	<-done
	start := time.Now()
	poll.Eventually(t, "the stream's OnDestroy", func() bool {
		v, _ := optionalStat(t, h, "inflow_requests_in_flight")
		return v == 0 && hung.Cancelled() == 1
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("the endpoint was released %v after the client left, want under a second", d)
	}
	// the released endpoint is picked again: with it still held, least
	// in-flight would send everything to the other one
	deadline := time.Now().Add(time.Second)
	for len(hung.Requests()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%s, released, was not picked again within a second", hung.Name)
		}
		if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "quick")); err != nil {
			t.Fatal(err)
		}
	}
	if n := stat(t, h, "http.public.downstream_rq_rx_reset"); n != 1 {
		t.Errorf("downstream_rq_rx_reset = %d, want 1", n)
	}
}

// A local reply before the request body is complete closes an HTTP/1
// connection after the reply (conn_manager_impl.cc:1996-2004): the rest
// of the body is never read.
func TestEarlyLocalReplyClosesTheConnection(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	const maxBody = 4096
	h, _ := startInflow(t, cpConfig(inflowConfig(maxBody, b)), harness.XDSHostOptions{})
	rc := dialRaw(t, h.Addr)
	// the filter answers 413 from the content-length, before any body byte
	rc.write(fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n", 10*maxBody))
	resp := rc.response(&http.Request{Method: http.MethodPost})
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Fatalf("status %d close %v, want 413 with connection: close", resp.StatusCode, resp.Close)
	}
	if !rc.closed() {
		t.Error("the connection stayed open after a reply that came before the request's end")
	}
	if n := stat(t, h, "http.public.downstream_rq_response_before_rq_complete"); n != 1 {
		t.Errorf("downstream_rq_response_before_rq_complete = %d", n)
	}
	noBackendGot(t, b)
}

// A client naming its own model and endpoint, twice each, cannot steer
// the request: the upstream sees exactly the filter's values.
func TestDuplicateRoutingHeadersNeverReachTheUpstream(t *testing.T) {
	t.Parallel()
	b, other := startBackend(t, "b"), startBackend(t, "other")
	cfg := inflowConfig(0, b)
	cfg["models"] = append(cfg["models"].([]any), map[string]any{"name": "other", "pool": "p2"})
	cfg["pools"] = append(cfg["pools"].([]any), map[string]any{"name": "p2", "endpoints": []string{other.Addr}})
	h, _ := startInflow(t, cpConfig(cfg), harness.XDSHostOptions{})
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodPost, h.URL("/v1/chat/completions"), strings.NewReader(chatBody("llama", "hi")))
	req.Header.Set("content-type", "application/json")
	req.Header.Set(testIDHeader, "dup")
	for _, v := range []string{"other", "llama"} {
		req.Header.Add(protocol.HeaderModel, v)
	}
	for _, v := range []string{other.Addr, "169.254.169.254:80"} {
		req.Header.Add(protocol.HeaderDestination, v)
	}
	doOK(t, req)
	got, r := received(t, "dup", b, other)
	if got != b {
		t.Fatalf("served by %s: the client's headers chose the route", got.Name)
	}
	if v := r.Header.Values(protocol.HeaderModel); len(v) != 1 || v[0] != "llama" {
		t.Errorf("upstream %s = %q, want [llama]", protocol.HeaderModel, v)
	}
	if v := r.Header.Values(protocol.HeaderDestination); len(v) != 1 || v[0] != b.Addr {
		t.Errorf("upstream %s = %q, want [%s]", protocol.HeaderDestination, v, b.Addr)
	}
}

// doOK sends req and fails the test unless the answer is a 200.
func doOK(t *testing.T, req *http.Request) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// The control plane's listener sets use_remote_address, so every request
// is an edge request: the HCM sanitises what a client could inject before
// the filter and the upstream see it (conn_manager_utility.cc:121-392).
func TestEdgeRequestHeadersAreSanitised(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	h, _ := startInflow(t, cpConfig(inflowConfig(0, b)), harness.XDSHostOptions{})
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodPost, h.URL("/v1/chat/completions"), strings.NewReader(chatBody("llama", "hi")))
	for k, v := range map[string]string{
		"content-type": "application/json", testIDHeader: "edge",
		"x-request-id": "client-chosen", "x-envoy-original-path": "/evil", "x-envoy-max-retries": "9",
		"x-envoy-expected-rq-timeout-ms": "1", "x-envoy-internal": "true", "x-forwarded-proto": "https",
		"x-forwarded-for": "203.0.113.7", "x-envoy-external-address": "203.0.113.7",
	} {
		req.Header.Set(k, v)
	}
	req.Header.Add("referer", "http://a.example/")
	req.Header.Add("referer", "http://b.example/")
	doOK(t, req)
	_, r := received(t, "edge", b)
	// the routes have no timeout, so the router sets no
	// x-envoy-expected-rq-timeout-ms of its own either
	for _, gone := range []string{"x-envoy-original-path", "x-envoy-max-retries", "x-envoy-internal", "referer", "x-envoy-expected-rq-timeout-ms"} {
		if v := r.Header.Values(gone); len(v) != 0 {
			t.Errorf("%s = %q reached the upstream", gone, v)
		}
	}
	want := map[string]string{
		"x-forwarded-proto":        "http",
		"x-forwarded-for":          "203.0.113.7,127.0.0.1",
		"x-envoy-external-address": "127.0.0.1",
	}
	for k, v := range want {
		if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want [%s]", k, got, v)
		}
	}
	if id := r.Header.Get("x-request-id"); id == "client-chosen" || len(id) != 36 {
		t.Errorf("x-request-id %q: an edge request gets a new UUID", id)
	}
}

// The model routes match x-ai-eg-model on every path, and an ORIGINAL_DST
// pool follows x-gateway-destination-endpoint: a request the filter does
// not route itself (any other path, the models API) must lose the client's
// values in DecodeHeaders, or the client reaches any address it names.
func TestClientRoutingHeadersOnOtherPathsReachNothing(t *testing.T) {
	t.Parallel()
	b, target := startBackend(t, "b"), startBackend(t, "target")
	for _, destination := range []string{"original_dst", "override_host"} {
		cfg := inflowConfig(0, b)
		cfg["pools"].([]any)[0].(map[string]any)["destination"] = destination
		h, _ := startInflow(t, cpConfig(cfg), harness.XDSHostOptions{})
		for _, path := range []string{"/v1/files", "/admin", "/v1/models"} {
			req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, h.URL(path), nil)
			req.Header.Set(protocol.HeaderModel, "llama")
			req.Header.Set(protocol.HeaderDestination, target.Addr)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := bodyOf(resp)
			want := http.StatusNotFound // Envoy's no-route reply, OpenAI-shaped
			if path == "/v1/models" {
				want = http.StatusOK // the filter's models API
			}
			if resp.StatusCode != want {
				t.Errorf("%s GET %s with the client's routing headers: %d %s, want %d", destination, path, resp.StatusCode, body, want)
			}
		}
	}
	noBackendGot(t, b, target)
}

// Chat completions at the paths clients get wrong: only the exact path
// (after merge_slashes and normalize_path) is an inference request; an
// upper-case or trailing-slash path is Envoy's no-route 404, OpenAI-shaped.
func TestChatAtNearMissPaths(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	h, _ := startInflow(t, cpConfig(inflowConfig(0, b)), harness.XDSHostOptions{})
	body := chatBody("llama", "hi")
	for _, c := range []struct {
		path string
		code int
	}{
		{"/v1/chat/completions", 200},
		{"//v1/chat/completions", 200},
		{"/v1/./chat/completions", 200},
		{"/v1/chat/completions/", 404},
		{"/V1/CHAT/COMPLETIONS", 404},
		{"/v1/chat/completions?stream=false", 200},
	} {
		rc := dialRaw(t, h.Addr)
		rc.write(fmt.Sprintf("POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s", c.path, len(body), body))
		resp := rc.response(&http.Request{Method: http.MethodPost})
		got := bodyOf(resp)
		if resp.StatusCode != c.code || !json.Valid([]byte(got)) {
			t.Errorf("POST %s: %d %s, want %d with a JSON body", c.path, resp.StatusCode, got, c.code)
		}
	}
	if n := len(b.Requests()); n != 4 {
		t.Errorf("the backend got %d requests, want the 4 inference ones", n)
	}
}

// The paths clients get wrong, answered as Envoy answers them with the
// control plane's route table and HCM (merge_slashes, normalize_path, the
// no-route 404 shaped by local_reply_config) or by the filter's models API
// and 405s, always in OpenAI's JSON, never a text 503.
func TestPathsOutsideTheModelRoutes(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	h, _ := startInflow(t, cpConfig(inflowConfig(0, b)), harness.XDSHostOptions{})
	cases := []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/v1/models", 200},
		{http.MethodGet, "//v1/models", 200},      // merge_slashes
		{http.MethodGet, "/v1/./models", 200},     // normalize_path
		{http.MethodGet, "/v1/models/llama", 200}, // retrieve model
		{http.MethodGet, "/v1/models/nope", 404},
		{http.MethodGet, "/v1/chat/completions", 405},
		{http.MethodHead, "/v1/chat/completions", 405},
		{http.MethodGet, "/V1/MODELS", 404}, // no route: Envoy's 404, OpenAI-shaped by local_reply_config
		{http.MethodGet, "/v1/models/", 200},
		{http.MethodPost, "/nope", 404},
	}
	for _, c := range cases {
		// by hand: Go's client would turn "//v1" into an absolute URL
		rc := dialRaw(t, h.Addr)
		rc.write(c.method + " " + c.path + " HTTP/1.1\r\nhost: x\r\n\r\n")
		resp := rc.response(&http.Request{Method: c.method})
		body := bodyOf(resp)
		if resp.StatusCode != c.code {
			t.Errorf("%s %s: status %d, want %d (%s)", c.method, c.path, resp.StatusCode, c.code, body)
			continue
		}
		if ct := resp.Header.Get("content-type"); ct != "application/json" {
			t.Errorf("%s %s: content-type %q, want application/json", c.method, c.path, ct)
		}
		if c.method != http.MethodHead && !json.Valid([]byte(body)) {
			t.Errorf("%s %s: body %q is not JSON", c.method, c.path, body)
		}
	}
	noBackendGot(t, b)
}
