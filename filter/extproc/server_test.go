package extproc

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/router"
	"github.com/inflow-gateway/inflow/filter/split"
)

// testServer serves cfg over an in-memory connection; the endpoints are
// never scraped in time, so picks fail open, which still picks.
func testServer(t *testing.T, cfg string) (extprocv3.ExternalProcessorClient, *Server) {
	t.Helper()
	c, err := config.Parse([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	pools := pool.NewManager()
	t.Cleanup(pools.Close)
	r, err := router.New(c, pools, split.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(&Stats{}, slog.New(slog.DiscardHandler))
	srv.Use(r)
	t.Cleanup(srv.Close)
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer(grpc.MaxRecvMsgSize(MaxRecvMessageBytes))
	extprocv3.RegisterExternalProcessorServer(g, srv)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return extprocv3.NewExternalProcessorClient(conn), srv
}

const poolConfig = `{"models":[{"name":"llama","pool":"p","rewrite":[{"model":"llama-3-8b"}]},{"name":"none","pool":"empty"}],
 "pools":[{"name":"p","endpoints":["10.0.0.1:8000","10.0.0.2:8000"]},{"name":"empty","endpoints":[]}],
 "limits":{"max_request_body_bytes":1000000}}`

func headers(method, path string, kv ...string) *extprocv3.HttpHeaders {
	m := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":method", RawValue: []byte(method)}, {Key: ":path", RawValue: []byte(path)}}}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return &extprocv3.HttpHeaders{Headers: m}
}

func open(t *testing.T, c extprocv3.ExternalProcessorClient) extprocv3.ExternalProcessor_ProcessClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	s, err := c.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func send(t *testing.T, s extprocv3.ExternalProcessor_ProcessClient, m *extprocv3.ProcessingRequest) {
	t.Helper()
	if err := s.Send(m); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, s extprocv3.ExternalProcessor_ProcessClient) *extprocv3.ProcessingResponse {
	t.Helper()
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func reqHeaders(h *extprocv3.HttpHeaders, mode bodyMode) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{
		Request:        &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: h},
		ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: mode, ResponseBodyMode: mode},
	}
}

func reqBody(b []byte, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: b, EndOfStream: eos}}}
}

func setHeaders(m *extprocv3.HeaderMutation) map[string]string {
	out := map[string]string{}
	for _, o := range m.GetSetHeaders() {
		out[o.GetHeader().GetKey()] = string(o.GetHeader().GetRawValue())
	}
	return out
}

func chatBody(n int) []byte {
	head, tail := `{"model":"llama","messages":[{"role":"user","content":"`, `"}]}`
	return []byte(head + strings.Repeat("a", n-len(head)-len(tail)) + tail)
}

// TestFullDuplexAnswersAfterTheBody: the headers response comes after the
// last chunk, with the decision; the rewritten body follows in chunks of
// at most MaxBodyChunkBytes, the last with end_of_stream.
func TestFullDuplexAnswersAfterTheBody(t *testing.T) {
	c, srv := testServer(t, poolConfig)
	s := open(t, c)
	body := chatBody(200_000)
	send(t, s, reqHeaders(headers("POST", "/v1/chat/completions", "content-length", strconv.Itoa(len(body)),
		protocol.HeaderDestination, "6.6.6.6:1"), modeFullDuplex))
	for i := 0; i < len(body); i += 16 << 10 {
		end := min(i+16<<10, len(body))
		send(t, s, reqBody(body[i:end], end == len(body)))
	}
	hr := recv(t, s).GetRequestHeaders()
	if hr == nil {
		t.Fatal("first answer is not the headers response")
	}
	set := setHeaders(hr.GetResponse().GetHeaderMutation())
	if set[protocol.HeaderModel] != "llama" {
		t.Errorf("%s = %q", protocol.HeaderModel, set[protocol.HeaderModel])
	}
	if d := set[protocol.HeaderDestination]; d != "10.0.0.1:8000" && d != "10.0.0.2:8000" {
		t.Errorf("%s = %q", protocol.HeaderDestination, d)
	}
	if !hr.GetResponse().GetClearRouteCache() {
		t.Error("clear_route_cache not set")
	}
	var got []byte
	for {
		br := recv(t, s).GetRequestBody()
		sr := br.GetResponse().GetBodyMutation().GetStreamedResponse()
		if sr == nil {
			t.Fatal("want streamed_response chunks")
		}
		if len(sr.GetBody()) > MaxBodyChunkBytes {
			t.Fatalf("chunk of %d bytes", len(sr.GetBody()))
		}
		got = append(got, sr.GetBody()...)
		if sr.GetEndOfStream() {
			break
		}
	}
	want := strings.Replace(string(body), `"llama"`, `"llama-3-8b"`, 1)
	if string(got) != want {
		t.Fatalf("body: %d bytes, want the %d-byte rewrite", len(got), len(want))
	}
	if srv.Stats().InFlight() != 1 {
		t.Errorf("in flight = %d while the stream is open", srv.Stats().InFlight())
	}
	_ = s.CloseSend()
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("after CloseSend: %v", err)
	}
	waitInFlight(t, srv, 0)
}

func waitInFlight(t *testing.T, srv *Server, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().InFlight() != want {
		if time.Now().After(deadline) {
			t.Fatalf("in flight = %d, want %d", srv.Stats().InFlight(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBufferedAnswersHeadersThenBody: BUFFERED gets an empty headers
// response at once, then one body response with the mutations, the new
// content-length and the metadata.
func TestBufferedAnswersHeadersThenBody(t *testing.T) {
	c, _ := testServer(t, poolConfig)
	s := open(t, c)
	body := chatBody(1000)
	send(t, s, reqHeaders(headers("POST", "/v1/chat/completions", "content-length", strconv.Itoa(len(body))), modeBuffered))
	hr := recv(t, s).GetRequestHeaders()
	if hr == nil || hr.GetResponse().GetHeaderMutation() != nil {
		t.Fatalf("want an empty headers response, got %v", hr)
	}
	send(t, s, reqBody(body, true))
	r := recv(t, s)
	br := r.GetRequestBody()
	newBody := br.GetResponse().GetBodyMutation().GetBody()
	if !strings.Contains(string(newBody), `"llama-3-8b"`) {
		t.Fatalf("body mutation %q", newBody)
	}
	set := setHeaders(br.GetResponse().GetHeaderMutation())
	if set["content-length"] != strconv.Itoa(len(newBody)) {
		t.Errorf("content-length %q for a %d-byte body", set["content-length"], len(newBody))
	}
	lb := r.GetDynamicMetadata().GetFields()[protocol.MetadataNamespaceLB].GetStructValue()
	if v := lb.GetFields()[protocol.MetadataKeyDestination].GetStringValue(); v != set[protocol.HeaderDestination] {
		// Pools default to override_host: the list starts with the header's endpoint.
		if !strings.HasPrefix(v, set[protocol.HeaderDestination]+",") {
			t.Errorf("metadata %q, header %q", v, set[protocol.HeaderDestination])
		}
	}
}

// TestImmediateResponses: rejections end the stream with the OpenAI body.
func TestImmediateResponses(t *testing.T) {
	c, srv := testServer(t, poolConfig)
	for _, tc := range []struct {
		name   string
		model  string
		status int
		code   string
	}{
		{"unknown model", "gpt-x", 404, "model_not_found"},
		{"no endpoints", "none", 503, "no_healthy_upstream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, c)
			send(t, s, reqHeaders(headers("POST", "/v1/chat/completions"), modeFullDuplex))
			send(t, s, reqBody([]byte(`{"model":"`+tc.model+`","messages":[]}`), true))
			ir := recv(t, s).GetImmediateResponse()
			if ir == nil || int(ir.GetStatus().GetCode()) != tc.status || !strings.Contains(string(ir.GetBody()), tc.code) {
				t.Fatalf("got %v", ir)
			}
			if ct := setHeaders(ir.GetHeaders())["content-type"]; ct != "application/json" {
				t.Errorf("content-type %q", ct)
			}
		})
	}
	// Over the limit mid-stream: answered before the rest of the body.
	s := open(t, c)
	send(t, s, reqHeaders(headers("POST", "/v1/chat/completions"), modeFullDuplex))
	send(t, s, reqBody(make([]byte, 600_000), false))
	send(t, s, reqBody(make([]byte, 600_000), false))
	if ir := recv(t, s).GetImmediateResponse(); ir.GetStatus().GetCode() != 413 {
		t.Fatalf("got %v", ir)
	}
	// A body mode that cannot carry a decision is refused loudly.
	s = open(t, c)
	send(t, s, reqHeaders(headers("POST", "/v1/chat/completions"), modeNone))
	if ir := recv(t, s).GetImmediateResponse(); ir.GetStatus().GetCode() != 500 {
		t.Fatalf("body mode NONE: got %v", ir)
	}
	if v := srv.Stats().Counter(protocol.StatRejected413); v != 1 {
		t.Errorf("413s = %d", v)
	}
}

// TestResponsePathPasses: response headers get an empty answer and a
// full-duplex response body is echoed chunk by chunk.
func TestResponsePathPasses(t *testing.T) {
	c, _ := testServer(t, poolConfig)
	s := open(t, c)
	send(t, s, reqHeaders(headers("GET", "/health"), modeFullDuplex))
	if hr := recv(t, s).GetRequestHeaders(); hr == nil || hr.GetResponse().GetHeaderMutation() != nil {
		t.Fatalf("pass-through headers: %v", hr)
	}
	send(t, s, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: headers("", "")}})
	if recv(t, s).GetResponseHeaders() == nil {
		t.Fatal("want a response headers answer")
	}
	send(t, s, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte("data: x\n\n"), EndOfStream: true}}})
	sr := recv(t, s).GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	if string(sr.GetBody()) != "data: x\n\n" || !sr.GetEndOfStream() {
		t.Fatalf("echo %v", sr)
	}
}

// TestPassStripsRoutingHeaders: a client-sent routing header on a
// request Inflow does not route is removed, and the route recomputed.
func TestPassStripsRoutingHeaders(t *testing.T) {
	c, _ := testServer(t, poolConfig)
	s := open(t, c)
	send(t, s, reqHeaders(headers("GET", "/health", protocol.HeaderDestination, "6.6.6.6:1"), modeFullDuplex))
	hr := recv(t, s).GetRequestHeaders()
	if rm := hr.GetResponse().GetHeaderMutation().GetRemoveHeaders(); len(rm) != 1 || rm[0] != protocol.HeaderDestination {
		t.Fatalf("remove_headers %v", rm)
	}
	if !hr.GetResponse().GetClearRouteCache() {
		t.Error("the route was chosen with the header: the cache must be cleared")
	}
}
