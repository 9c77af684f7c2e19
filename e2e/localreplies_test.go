package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// Every class of Envoy local reply, and the filter's own, reaches the
// client as OpenAI's error JSON through the host running what the control
// plane generates (its local_reply_config, routes, clusters, filter config
// over ECDS), and every 4xx and 5xx is counted: all in the HCM's
// downstream_rq_4xx/5xx, Envoy's replies to inference requests also in the
// filter's inflow_envoy_replies_*, its own rejections in inflow_rejected_*.
//
// The control plane emits no route timeout (a generation may stream for
// minutes) and a listener buffer 1 MiB above the filter's body limit (so
// the filter's 413 always comes first); to make Envoy produce its 504 and
// its 413 the test lowers those two in the generated resources, and
// empties one pool's EDS assignment (pods not ready yet) for "no healthy
// upstream". Everything else is the translator's output as shipped.
func TestEveryLocalReplyIsOpenAIShapedAndCounted(t *testing.T) {
	t.Parallel()
	ok, hang, unready := startBackend(t, "ok"), startBackend(t, "hang"), startBackend(t, "unready")
	hang.HangOn = "HANG"
	accessLog := filepath.Join(t.TempDir(), "access.log")
	const listenerBuffer = 64 << 10
	cfg := cpConfig(map[string]any{
		"models": []any{
			map[string]any{"name": "llama", "pool": "ok"},
			map[string]any{"name": "dead", "pool": "dead"},
			map[string]any{"name": "slow", "pool": "hang"},
			map[string]any{"name": "unready", "pool": "unready"},
		},
		"pools": []any{
			map[string]any{"name": "ok", "endpoints": []string{ok.Addr}},
			// nothing listens there: the filter fails open onto it (no
			// scrape ever succeeded) and Envoy's connect fails
			map[string]any{"name": "dead", "endpoints": []string{deadAddr(t)}, "destination": "original_dst"},
			map[string]any{"name": "hang", "endpoints": []string{hang.Addr}},
			map[string]any{"name": "unready", "endpoints": []string{unready.Addr}, "destination": "override_host"},
		},
		"access_log": map[string]any{"path": accessLog, "json_format": map[string]any{
			"ua": "%REQ(USER-AGENT)%", "code": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS%", "details": "%RESPONSE_CODE_DETAILS%"}},
	})
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := spec.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	res, err := translator.Translate(parsed)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range res.Listeners {
		l.PerConnectionBufferLimitBytes = wrapperspb.UInt32(listenerBuffer)
	}
	for _, rc := range res.Routes {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				if r.GetRoute().GetCluster() == translator.PoolClusterName("hang") {
					r.GetRoute().Timeout = durationpb.New(300 * time.Millisecond)
				}
			}
		}
	}
	for i, cla := range res.Endpoints {
		if cla.ClusterName == translator.PoolClusterName("unready") {
			res.Endpoints[i] = &endpointv3.ClusterLoadAssignment{ClusterName: cla.ClusterName}
		}
	}
	a := startADS(t)
	setADS(t, a, "1", res.ByType())
	h := startXDSHost(t, a.Addr, harness.XDSHostOptions{Listener: "public"})

	chat := func(model, content string) string { return chatBody(model, content) }
	post := func(body string) string {
		return fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n", len(body))
	}
	big := chat("llama", strings.Repeat("x", 2*listenerBuffer))
	cases := []struct {
		name    string
		head    string // the request line and headers, without the final CRLF
		body    string
		status  int
		typ     string
		code    any // the error's code (nil: JSON null)
		flags   string
		details string // the access log's %RESPONSE_CODE_DETAILS% starts with it
		envoy   bool   // an Envoy reply the filter counts (an inference request)
		filter  string
	}{
		{name: "no route", head: "GET /nowhere HTTP/1.1\r\nhost: x\r\n", status: 404, typ: "invalid_request_error", code: "not_found",
			flags: "NR", details: "route_not_found"},
		{name: "connect failure", head: post(chat("dead", "hi")), body: chat("dead", "hi"), status: 503, typ: "server_error", code: "service_unavailable",
			flags: "UF", details: "upstream_reset_before_response_started{remote_connection_failure", envoy: true},
		{name: "no healthy upstream", head: post(chat("unready", "hi")), body: chat("unready", "hi"), status: 503, typ: "server_error", code: "service_unavailable",
			flags: "UH", details: "no_healthy_upstream", envoy: true},
		{name: "upstream timeout", head: post(chat("slow", "HANG")), body: chat("slow", "HANG"), status: 504, typ: "server_error", code: "timeout",
			flags: "UT", details: "upstream_response_timeout", envoy: true},
		{name: "Envoy's body limit", head: post(big), body: big, status: 413, typ: "invalid_request_error", code: "request_too_large",
			details: "request_payload_too_large", envoy: true},
		{name: "header limit", head: "GET /v1/models HTTP/1.1\r\nhost: x\r\n" + strings.Repeat("x-h: v\r\n", 100), status: 431,
			typ: "invalid_request_error", code: "request_headers_too_large", details: "http1.too_many_headers"},
		{name: "the filter's own", head: post(`{"model":`), body: `{"model":`, status: 400, typ: "invalid_request_error", filter: protocol.StatRejected400},
		{name: "the filter's 405", head: "GET /v1/chat/completions HTTP/1.1\r\nhost: x\r\n", status: 405, typ: "invalid_request_error", filter: protocol.StatRejected405},
	}
	var want4xx, want5xx, envoy4xx, envoy5xx int64
	filterCounts := map[string]int64{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ua := strings.ReplaceAll(c.name, " ", "-")
			rc := dialRaw(t, h.Addr)
			// user-agent first: a codec error stops reading the headers
			line, rest, _ := strings.Cut(c.head, "\r\n")
			rc.write(line + "\r\nuser-agent: " + ua + "\r\n" + rest + "\r\n" + c.body)
			resp := rc.response(&http.Request{Method: strings.Fields(c.head)[0]})
			body := bodyOf(resp)
			if resp.StatusCode != c.status || resp.Header.Get("content-type") != "application/json" {
				t.Fatalf("%d %q %s, want %d application/json", resp.StatusCode, resp.Header.Get("content-type"), body, c.status)
			}
			var e struct {
				Error map[string]any `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == nil {
				t.Fatalf("body %s is not OpenAI's error JSON (%v)", body, err)
			}
			if msg, _ := e.Error["message"].(string); msg == "" || e.Error["type"] != c.typ {
				t.Errorf("error %v, want type %s and a message", e.Error, c.typ)
			}
			if c.filter == "" && e.Error["code"] != c.code {
				t.Errorf("code %v, want %v", e.Error["code"], c.code)
			}
			if c.details != "" {
				// a codec error stops before the headers reach the stream
				// (Envoy logs %REQ()% of such a stream as "-"): found by
				// its details
				key, value := "ua", ua
				if c.status == 431 {
					key, value = "details", c.details
				}
				line := logLineOf(t, accessLog, key, value)
				if details, _ := line["details"].(string); !strings.HasPrefix(details, c.details) || (c.flags != "" && line["flags"] != c.flags) {
					t.Errorf("access log %v, want details %s, flags %s", line, c.details, c.flags)
				}
			}
		})
		switch {
		case c.status >= 500:
			want5xx++
			if c.envoy {
				envoy5xx++
			}
		default:
			want4xx++
			if c.envoy {
				envoy4xx++
			}
		}
		if c.filter != "" {
			filterCounts[c.filter]++
		}
	}
	filterCounts[protocol.StatRejected413] = 1 // Envoy's 413 is a rejection too
	noBackendGot(t, ok)
	want := map[string]int64{"http.public.downstream_rq_4xx": want4xx, "http.public.downstream_rq_5xx": want5xx,
		protocol.StatEnvoyReplies4xx: envoy4xx, protocol.StatEnvoyReplies5xx: envoy5xx}
	for k, v := range filterCounts {
		want[k] = v
	}
	for name, n := range want {
		// the filter exports its counters once a second
		waitStat(t, h, name, func(v int64) bool {
			if v > n {
				t.Fatalf("%s = %d, want %d", name, v, n)
			}
			return v == n
		})
	}
}

// logLineOf waits for the JSON access log line whose key is value.
func logLineOf(t *testing.T, path, key, value string) map[string]any {
	t.Helper()
	var line map[string]any
	poll.Eventually(t, "the access log line with "+key+" "+value, func() bool {
		for _, l := range readJSONLines(t, path) {
			if l[key] == value {
				line = l
				return true
			}
		}
		return false
	})
	return line
}
