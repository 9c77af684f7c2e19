package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/inflow-gateway/inflow/e2e/egrun"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/hostxds"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// TestEnvoyGatewayXDSThroughTheHost: the xDS the real Envoy Gateway serves
// with Inflow's extension server, taken as a proxy of Gateway
// default/inflow takes it (mutual TLS with certgen's certificate,
// node.cluster = the Gateway), into the xDS-driven host with the real
// inflow.so; the filter config and the pools' members through the
// bootstrap cluster inflow-xds (delta xDS from Inflow's control plane), as
// the shipped EnvoyProxy configures. Requests with the official OpenAI
// client reach the vLLM simulators through Inflow's pick.
//
// The Gateway has its plain-text listener only: the host does not model
// downstream TLS, and a proxy that refused the TLS listener would never
// subscribe to its routes, which Envoy Gateway's ADS-mode cache requires
// before it answers any. The model-header rule shares the path rule's
// /v1/ prefix: Gateway API ranks a longer path above header matches, so a
// header rule on "/" would lose to the path rule for /v1/ requests.
const egReadyListener = "envoy-gateway-proxy-ready-0.0.0.0-19003"

func TestEnvoyGatewayXDSThroughTheHost(t *testing.T) {
	bin := envoyGatewayBinary(t)
	llama := []string{startSim(t, llamaServed, "127.0.0.81"), startSim(t, llamaServed, "127.0.0.82")}
	tiny := startSim(t, tinyServed, "127.0.0.83")
	web, err := harness.StartBackend("web")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(web.Close)
	cp, _ := startEnvoyGatewayMode(t, map[string][]string{"default.llama": llama, "default.tiny": {tiny}},
		fmt.Sprintf("costs: [{metadata_key: %s, type: TotalToken}]\n", protocol.CostKeyTotalToken))
	accessLog := filepath.Join(t.TempDir(), "access.json")
	eg := startEnvoyGateway(t, bin, plainGateway(t, web.Addr, accessLog), cp.ExtensionAddr)

	h := startEGProxyOf(t, eg, cp.Addr)

	t.Run("all of it runs", func(t *testing.T) {
		// nothing refused, and Envoy Gateway's readiness listener answers
		// through its health_check filter
		if st := h.Agent().Status(); st.NACKs != 0 {
			t.Errorf("%d NACKs, the last %q", st.NACKs, st.LastNACK)
		}
		ready, err := h.ListenerAddr(testContext(t), egReadyListener)
		if err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]int{"/ready": http.StatusOK, "/other": http.StatusInternalServerError} {
			r, err := http.Get("http://" + ready + path)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			// its HCM keeps the default server_header_transformation OVERWRITE
			if r.StatusCode != want || r.Header.Get("server") != "envoy" {
				t.Errorf("readiness listener %s: %d server %q, want %d from envoy", path, r.StatusCode, r.Header.Get("server"), want)
			}
		}
	})

	client := openai.NewClient(option.WithBaseURL("http://"+h.Addr+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	ctx := testContext(t)
	chat := func(model string, opts ...option.RequestOption) (*openai.ChatCompletion, error) {
		return client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}}, opts...)
	}

	t.Run("pool of the route", func(t *testing.T) {
		// llama is not in the filter config's models: the route binding
		// (PostRouteModify) sends it to default.llama, whose members come
		// over inflow-xds; the first requests may race the members' arrival
		var resp *openai.ChatCompletion
		var last error
		n := 0
		if err := poll.Until(ctx, 20*time.Second, "a llama completion", func() bool {
			n = logLines(accessLog)
			resp, last = chat(llamaServed)
			return last == nil
		}); err != nil {
			t.Fatalf("%v: %v", err, last)
		}
		if resp.Model != llamaServed || resp.Usage.TotalTokens == 0 {
			t.Errorf("model %q, usage %+v: want %s with token usage", resp.Model, resp.Usage, llamaServed)
		}
		line := logLineAfter(t, accessLog, n)
		if !slices.Contains(llama, fmt.Sprint(line["upstream"])) || line["tokens"] != float64(resp.Usage.TotalTokens) || line["model"] != llamaServed {
			t.Errorf("access log %v: want a llama pod and %d tokens", line, resp.Usage.TotalTokens)
		}
	})
	t.Run("listed model through the header route", func(t *testing.T) {
		// tiny-model is listed: the filter sets x-ai-eg-model, clears the
		// route cache, and Envoy Gateway's header-matched route takes it
		// to its ORIGINAL_DST cluster at the filter's pick
		n := logLines(accessLog)
		resp, err := chat(tinyServed)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Model != tinyServed {
			t.Errorf("model %q, want %s", resp.Model, tinyServed)
		}
		if line := logLineAfter(t, accessLog, n); line["upstream"] != tiny || line["tokens"] != float64(resp.Usage.TotalTokens) {
			t.Errorf("access log %v: want %s and %d tokens", line, tiny, resp.Usage.TotalTokens)
		}
	})
	t.Run("other routes untouched", func(t *testing.T) {
		// the Backend's cluster gets its endpoints over ADS from Envoy
		// Gateway (the assignment holds keep that answered)
		r, err := http.Get("http://" + h.Addr + "/other/page")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK || len(web.Requests()) != 1 {
			t.Errorf("status %d, %d requests at the Backend: want 200 from it", r.StatusCode, len(web.Requests()))
		}
		// Envoy Gateway's server_header_transformation PASS_THROUGH (the
		// Backend sends none) and the router's suppress_envoy_headers
		if s, st := r.Header.Get("server"), r.Header.Get("x-envoy-upstream-service-time"); s != "" || st != "" {
			t.Errorf("server %q, x-envoy-upstream-service-time %q: want neither", s, st)
		}
		if got := web.Requests()[0].Header.Get("x-envoy-expected-rq-timeout-ms"); got != "" {
			t.Errorf("the Backend got x-envoy-expected-rq-timeout-ms %q though the router suppresses it", got)
		}
	})
	t.Run("bad body is an OpenAI 400", func(t *testing.T) {
		r, err := http.Post("http://"+h.Addr+"/v1/chat/completions", "application/json", strings.NewReader(`{"model": "x",`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"invalid_request_error"`) {
			t.Errorf("%d %s: want an OpenAI-shaped 400", r.StatusCode, body)
		}
	})
	t.Run("no route is Envoy's 404", func(t *testing.T) {
		// the Backend route is /other, llama's /v1: /nowhere matches none
		r, err := http.Get("http://" + h.Addr + "/nowhere")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("status %d, want 404 (no route)", r.StatusCode)
		}
	})
	t.Run("escaped slashes redirect", func(t *testing.T) {
		// Envoy Gateway's path_with_escaped_slashes_action UNESCAPE_AND_REDIRECT
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		r, err := c.Get("http://" + h.Addr + "/v1%2Fmodels")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusTemporaryRedirect || r.Header.Get("location") != "/v1/models" {
			t.Errorf("%d location %q: want 307 to /v1/models", r.StatusCode, r.Header.Get("location"))
		}
	})
	t.Run("underscores rejected", func(t *testing.T) {
		// headers_with_underscores_action REJECT_REQUEST
		req, _ := http.NewRequest(http.MethodGet, "http://"+h.Addr+"/v1/models", nil)
		req.Header["X_bad"] = []string{"1"}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", r.StatusCode)
		}
	})
}

// plainGateway is testdata's resources with the Gateway's plain-text
// listener only and the Backend at addr.
func plainGateway(t *testing.T, addr, accessLog string) string {
	t.Helper()
	text := withoutTLSListener(string(repoFile(t, "e2e/testdata/envoygateway/resources.yaml")))
	host, port, _ := strings.Cut(addr, ":")
	for from, to := range map[string]string{
		"{address: 127.0.0.1, port: 3000}":                                 "{address: " + host + ", port: " + port + "}",
		"matches: [{headers: [{name: x-ai-eg-model, value: tiny-model}]}]": "matches: [{path: {type: PathPrefix, value: /v1/}, headers: [{name: x-ai-eg-model, value: tiny-model}]}]",
		"  gatewayClassName: inflow\n":                                     "  gatewayClassName: inflow\n  infrastructure:\n    parametersRef: {group: gateway.envoyproxy.io, kind: EnvoyProxy, name: inflow-proxy}\n",
	} {
		if !strings.Contains(text, from) {
			t.Fatalf("testdata/envoygateway/resources.yaml has no %q", from)
		}
		text = strings.Replace(text, from, to, 1)
	}
	// the access log a user reads the pick and the tokens from
	return egrun.Docs(text, fmt.Sprintf(`apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyProxy
metadata: {name: inflow-proxy, namespace: default}
spec:
  telemetry:
    accessLog:
      settings:
        - format:
            type: JSON
            json:
              code: "%%RESPONSE_CODE%%"
              model: "%%REQ(X-AI-EG-MODEL)%%"
              upstream: "%%UPSTREAM_HOST%%"
              tokens: "%%DYNAMIC_METADATA(%s:%s)%%"
          sinks:
            - type: File
              file: {path: %q}
`, protocol.MetadataNamespaceAIGateway, protocol.CostKeyTotalToken, accessLog))
}

// logLines counts the access log's lines.
func logLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return 0
	}
	return strings.Count(string(b), "\n")
}

// logLineAfter is line n+1 of the access log (the host writes it when the
// stream ends, which may be after the client read the response: poll).
func logLineAfter(t *testing.T, path string, n int) map[string]any {
	t.Helper()
	var line map[string]any
	if err := poll.Until(testContext(t), 5*time.Second, "an access log line", func() bool {
		if logLines(path) <= n {
			return false
		}
		b, _ := os.ReadFile(path)
		return json.Unmarshal([]byte(strings.Split(string(b), "\n")[n]), &line) == nil
	}); err != nil {
		t.Fatal(err)
	}
	return line
}

// withoutTLSListener is testdata's resources without the Gateway's HTTPS
// listener, for the host, which does not model downstream TLS.
func withoutTLSListener(text string) string {
	const first, last = "    - name: https", "        certificateRefs: [{kind: Secret, name: llm-tls}]\n"
	i, j := strings.Index(text, first), strings.Index(text, last)
	if i < 0 || j < i {
		panic("testdata/envoygateway/resources.yaml: no HTTPS listener where expected")
	}
	return text[:i] + text[j+len(last):]
}

// startEGProxyOf runs a host as a proxy of the Gateway that eg serves, its
// bootstrap cluster inflow-xds reaching cp (Inflow's xDS server).
func startEGProxyOf(t *testing.T, eg *egrun.EnvoyGateway, cp string) *harness.Host {
	t.Helper()
	return startEGProxy(t, harness.XDSHostOptions{
		ControlPlane: egrun.XDSAddr, NodeCluster: egGateway, Listener: egHTTPListener,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(eg.ClientTLS))},
		Bootstrap: map[string]hostxds.Bootstrap{"inflow-xds": {Addr: cp,
			DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}}},
	})
}
