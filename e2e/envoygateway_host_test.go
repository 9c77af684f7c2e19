package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	extension "github.com/envoyproxy/gateway/proto/extension"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/inflow-gateway/inflow/controlplane/envoygateway"
	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// The Envoy Gateway mode's shapes through the xDS-driven host and the real
// inflow.so: Envoy-Gateway-like resources (only fields the host models),
// changed by the real hooks, plus Inflow's filter config and pool members,
// on one ADS stream. What the host cannot run of Envoy Gateway's real
// output (TestEnvoyGatewayTranslation's) is listed in docs/envoy-gateway.md.
// The one change made to the hooks' output: the filter config and the
// members come over the host's ADS stream instead of the bootstrap cluster
// inflow-xds (the host has one xDS source).

const (
	egListenerName = "default/inflow/http"
	llamaServed    = "llama-3.1-8b-instruct"
	tinyServed     = "tiny-model"
)

type egHostStack struct {
	host    *harness.Host
	log     string
	llama   []string
	tiny    string
	deadEps string
}

func startEGHost(t *testing.T) *egHostStack {
	t.Helper()
	st := &egHostStack{log: filepath.Join(t.TempDir(), "access.json"), deadEps: freeAddr(t)}
	for i := range 2 {
		st.llama = append(st.llama, startSim(t, llamaServed, fmt.Sprintf("127.0.0.%d", 71+i)))
	}
	st.tiny = startSim(t, tinyServed, "127.0.0.73")

	cfg := fmt.Sprintf(`{"envoy_gateway": {}, "models": [{"name": %q, "pool": "default.tiny"}],
		"pools": [{"name": "default.llama", "endpoints": [%q, %q], "scheduler": {"fallbacks": 1}},
		          {"name": "default.tiny", "endpoints": [%q], "destination": "original_dst"},
		          {"name": "default.dead", "endpoints": [%q], "scheduler": {"fallbacks": 0}}],
		"costs": [{"metadata_key": %q, "type": "TotalToken"}]}`,
		tinyServed, st.llama[0], st.llama[1], st.tiny, st.deadEps, protocol.CostKeyTotalToken)
	c, err := spec.Parse([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	inflow, err := translator.Translate(c)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := envoygateway.New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}

	// Envoy Gateway's shapes: a Gateway listener, routes of an HTTPRoute
	// (a model header match, a path, a test header naming the dead pool)
	// to InferencePool clusters, and an ordinary route to a Backend.
	lis := listener(t, egListenerName, egListenerName, func(hcm *hcmv3.HttpConnectionManager) {
		hcm.AccessLog = []*accesslogv3.AccessLog{{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{
			TypedConfig: typed(t, &filev3.FileAccessLog{Path: st.log, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: jsonFormat(t, map[string]any{
				"code": "%RESPONSE_CODE%", "upstream": "%UPSTREAM_HOST%", "model": "%REQ(X-AI-EG-MODEL)%", "route": "%ROUTE_NAME%",
				"tokens": "%DYNAMIC_METADATA(" + protocol.MetadataNamespaceAIGateway + ":" + protocol.CostKeyTotalToken + ")%",
			})}})}}}
		hcm.UseRemoteAddress = nil
	})
	tinyRoute := prefixRoute("httproute/default/llm/rule/0/match/0/*", "/", "httproute/default/llm/rule/0")
	tinyRoute.Match.Headers = []*routev3.HeaderMatcher{exactHeaderMatch(protocol.HeaderModel, tinyServed)}
	deadRoute := prefixRoute("httproute/default/dead/rule/0/match/0/*", "/", "httproute/default/dead/rule/0")
	deadRoute.Match.Headers = []*routev3.HeaderMatcher{exactHeaderMatch("x-test-pool", "dead")}
	llamaRoute := &routev3.Route{Name: "httproute/default/llm/rule/1/match/0/*",
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/v1"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "httproute/default/llm/rule/1"}}}}
	other := prefixRoute("httproute/default/other/rule/0/match/0/*", "/other", "httproute/default/other/rule/0")
	pools := map[string]string{"httproute/default/llm/rule/0": "tiny", "httproute/default/llm/rule/1": "llama", "httproute/default/dead/rule/0": "dead"}

	ctx := context.Background()
	res := resources{}
	lresp, err := ext.PostHTTPListenerModify(ctx, &extension.PostHTTPListenerModifyRequest{Listener: lis})
	if err != nil || lresp.GetListener() == nil {
		t.Fatalf("listener hook: %v", err)
	}
	res.add(resource.ListenerType, overADS(t, lresp.GetListener()))
	rc := routeConfig(egListenerName)
	for _, r := range []*routev3.Route{tinyRoute, deadRoute, llamaRoute, other} {
		resp, err := ext.PostRouteModify(ctx, &extension.PostRouteModifyRequest{Route: r,
			PostRouteContext: &extension.PostRouteExtensionContext{ExtensionResources: poolResource(pools[r.GetRoute().GetCluster()])}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetRoute() != nil {
			r = resp.GetRoute()
		}
		rc.VirtualHosts[0].Routes = append(rc.VirtualHosts[0].Routes, r)
	}
	res.add(resource.RouteType, rc)
	for name, pool := range pools {
		c := edsCluster(name)
		c.EdsClusterConfig.ServiceName = name
		resp, err := ext.PostClusterModify(ctx, &extension.PostClusterModifyRequest{Cluster: c,
			PostClusterContext: &extension.PostClusterExtensionContext{BackendExtensionResources: poolResource(pool)}})
		if err != nil {
			t.Fatal(err)
		}
		res.add(resource.ClusterType, overADS(t, resp.GetCluster()))
	}
	res.add(resource.ClusterType, staticCluster(t, "httproute/default/other/rule/0", freeAddr(t)))
	// Inflow's own: the filter config and the override_host pools' members.
	for _, e := range inflow.Extensions {
		res.add(resource.ExtensionConfigType, e)
	}
	for _, cla := range inflow.Endpoints {
		res.add(resource.EndpointType, cla)
	}
	a := startADS(t)
	setADS(t, a, "1", res)
	st.host = startEGProxy(t, harness.XDSHostOptions{ControlPlane: a.Addr, Listener: egListenerName, NodeCluster: egGateway})
	return st
}

// startEGProxy runs a host as a proxy of the Gateway, closed (with its log
// on failure) when the test ends.
func startEGProxy(t *testing.T, opts harness.XDSHostOptions) *harness.Host {
	t.Helper()
	h, err := harness.StartXDSHost(testContext(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		if t.Failed() {
			t.Logf("envoyhost log:\n%s", h.Stderr())
		}
	})
	return h
}

// poolResource is the InferencePool default/name as Envoy Gateway passes it
// to the hooks ("" for none).
func poolResource(name string) []*extension.ExtensionResource {
	if name == "" {
		return nil
	}
	return []*extension.ExtensionResource{{UnstructuredBytes: []byte(`{"apiVersion":"inference.networking.k8s.io/v1","kind":"InferencePool","metadata":{"name":"` +
		name + `","namespace":"default"}}`)}}
}

// overADS is m with the config sources pointing at the bootstrap cluster
// inflow-xds switched to ADS: the host's one xDS source.
func overADS(t *testing.T, m proto.Message) types.Resource {
	t.Helper()
	m = proto.Clone(m)
	switch v := m.(type) {
	case *clusterv3.Cluster:
		if eds := v.GetEdsClusterConfig(); eds != nil {
			eds.EdsConfig = adsSource()
		}
	case *listenerv3.Listener:
		for _, fc := range v.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				for _, hf := range hcm.GetHttpFilters() {
					if cd := hf.GetConfigDiscovery(); cd != nil {
						cd.ConfigSource = adsSource()
						cd.ConfigSource.InitialFetchTimeout = durationpb.New(0)
					}
				}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: typed(t, hcm)}
			}
		}
	}
	return m.(types.Resource)
}

func exactHeaderMatch(name, value string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}}}}
}

func startSim(t *testing.T, model, ip string) string {
	t.Helper()
	s, err := sim.Start(testContext(t), sim.Options{Model: model, Listen: ip + ":0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s.Addr()
}

// TestEnvoyGatewayShapesThroughTheHost: through the hooks' listener,
// routes and clusters and the real filter, with the official OpenAI client:
// a model the filter config does not list is picked in the route's pool
// (OverrideHost over Inflow's members) and gets its token metadata; a
// listed model goes to its own pool (ORIGINAL_DST) through the route that
// matches the header the filter set; a dead pool's connect failure and a
// bad body are OpenAI errors; a non-inference route's error stays Envoy's.
func TestEnvoyGatewayShapesThroughTheHost(t *testing.T) {
	st := startEGHost(t)
	client := openai.NewClient(option.WithBaseURL(st.host.URL("/v1/")), option.WithAPIKey("k"), option.WithMaxRetries(0))
	resp, err := client.Chat.Completions.New(testContext(t), openai.ChatCompletionNewParams{
		Model:    llamaServed,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello, gateway.")},
	})
	if err != nil {
		t.Fatalf("a model served through the route's pool: %v", err)
	}
	if resp.Model != llamaServed || resp.Usage.TotalTokens == 0 {
		t.Errorf("response model %q, usage %+v", resp.Model, resp.Usage)
	}

	r, body := raw(t, st.host.URL("/v1/chat/completions"), chatBody(tinyServed, "hi"))
	if r.StatusCode != http.StatusOK || !strings.Contains(string(body), tinyServed) {
		t.Errorf("listed model: %d %s", r.StatusCode, body)
	}

	r, body = raw(t, st.host.URL("/v1/chat/completions"), chatBody("whatever", "hi"), "x-test-pool", "dead")
	if e := openAIError(t, body); r.StatusCode != http.StatusServiceUnavailable || e.Code != "service_unavailable" {
		t.Errorf("dead pool: %d %s, want an OpenAI 503", r.StatusCode, body)
	}
	r, body = raw(t, st.host.URL("/v1/chat/completions"), `{"model": "x", "messages": [`)
	if e := openAIError(t, body); r.StatusCode != http.StatusBadRequest || e.Type != "invalid_request_error" {
		t.Errorf("bad body: %d %s", r.StatusCode, body)
	}
	get, err := http.Get(st.host.URL("/other"))
	if err != nil {
		t.Fatal(err)
	}
	otherBody := bodyOf(get)
	get.Body.Close()
	if get.StatusCode != http.StatusServiceUnavailable || strings.Contains(otherBody, `"error"`) {
		t.Errorf("a non-inference route's 503 was reshaped: %d %q", get.StatusCode, otherBody)
	}

	var lines []map[string]any
	poll.Eventually(t, "the access log lines", func() bool {
		lines = readJSONLines(t, st.log)
		return len(lines) >= 5
	})
	byModel := map[string]map[string]any{}
	for _, l := range lines {
		if m, ok := l["model"].(string); ok {
			byModel[m] = l
		}
	}
	llama, tiny := byModel[llamaServed], byModel[tinyServed]
	if llama == nil || llama["route"] != "httproute/default/llm/rule/1/match/0/*" || !slices.Contains(st.llama, fmt.Sprint(llama["upstream"])) || llama["tokens"] == nil {
		t.Errorf("unlisted model's line %v: want the llama route and pool, and token metadata", llama)
	}
	if tiny == nil || tiny["route"] != "httproute/default/llm/rule/0/match/0/*" || tiny["upstream"] != st.tiny {
		t.Errorf("listed model's line %v: want the header route to %s", tiny, st.tiny)
	}
}

type openAIErr struct {
	Type string `json:"type"`
	Code string `json:"code"`
}

func openAIError(t *testing.T, body []byte) openAIErr {
	t.Helper()
	var e struct {
		Error openAIErr `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Errorf("not an OpenAI error body: %s", body)
	}
	return e.Error
}
