package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// The HTTP connection manager's own configuration, by hand: local_reply_config,
// access logs, route tables, warming, and what the host refuses.

func jsonFormat(t *testing.T, m map[string]any) *corev3.SubstitutionFormatString {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: s}}
}

func flagFilter(flags ...string) *accesslogv3.AccessLogFilter {
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ResponseFlagFilter{
		ResponseFlagFilter: &accesslogv3.ResponseFlagFilter{Flags: flags}}}
}

func panickyFilter(t *testing.T) *hcmv3.HttpFilter {
	return golangInline(t, golangConfig(t, harness.PanickyPlugin, "", map[string]any{}))
}

func startPanickyHost(t *testing.T, a *harness.ADS) *harness.Host {
	return startXDSHost(t, a.Addr, harness.XDSHostOptions{Listener: "l", Library: harness.Out(harness.PanickyPlugin + ".so")})
}

// local_reply_config covers every local reply: the host's own (here
// "no healthy upstream", "no route") and the filter's.
func TestLocalReplyConfigMapsHostAndFilterReplies(t *testing.T) {
	t.Parallel()
	lrc := func(hcm *hcmv3.HttpConnectionManager) {
		hcm.LocalReplyConfig = &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{
			{Filter: flagFilter("UH"), BodyFormatOverride: jsonFormat(t, map[string]any{
				"error": map[string]any{"message": "%LOCAL_REPLY_BODY%", "code": "%RESPONSE_CODE%", "type": "server_error"}})},
			{Filter: flagFilter("NR"), StatusCode: wrapperspb.UInt32(404), Body: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: "no route here"}}},
			{Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_HeaderFilter{HeaderFilter: &accesslogv3.HeaderFilter{
				Header: &routev3.HeaderMatcher{Name: "x-map", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}}},
				StatusCode: wrapperspb.UInt32(418)},
		}}
	}
	a := startADS(t)
	setADS(t, a, "1", resources{}.
		add(resource.ListenerType, listener(t, "l", "r", lrc, panickyFilter(t))).
		add(resource.RouteType, routeConfig("r", prefixRoute("pool", "/pool", "pool/p"))).
		add(resource.ClusterType, originalDstCluster("pool/p")))
	h := startPanickyHost(t, a)
	cases := []struct {
		name, path string
		header     map[string]string
		code       int
		body, ct   string
	}{
		{"no healthy upstream, as JSON", "/pool", nil, 503,
			`{"error":{"code":503,"message":"no healthy upstream","type":"server_error"}}` + "\n", "application/json"},
		{"no route, new body", "/elsewhere", nil, 404, "no route here", "text/plain"},
		{"the filter's own reply, mapped by header", "/pool", map[string]string{"x-map": "1", "x-override": "not-an-ip:80"}, 418, "", ""},
		{"the filter's own reply, no mapper matches", "/pool", map[string]string{"x-override": "not-an-ip:80"}, 400, "", ""},
	}
	for _, c := range cases {
		req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, h.URL(c.path), nil)
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := bodyOf(resp)
		resp.Body.Close()
		if resp.StatusCode != c.code || (c.body != "" && body != c.body) {
			t.Errorf("%s: %d %q, want %d %q", c.name, resp.StatusCode, body, c.code, c.body)
		}
		if c.ct != "" && resp.Header.Get("content-type") != c.ct {
			t.Errorf("%s: content-type %q, want %q", c.name, resp.Header.Get("content-type"), c.ct)
		}
	}
}

// An access log in Envoy's formats with the stream's final state: response
// code and flags, upstream host, request headers, dynamic metadata.
func TestAccessLogInEnvoysFormats(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	dir := t.TempDir()
	jsonLog, textLog := filepath.Join(dir, "access.json"), filepath.Join(dir, "access.log")
	logs := func(hcm *hcmv3.HttpConnectionManager) {
		hcm.AccessLog = []*accesslogv3.AccessLog{
			{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: typed(t, &filev3.FileAccessLog{
				Path: jsonLog, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: jsonFormat(t, map[string]any{
					"code": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS%", "upstream": "%UPSTREAM_HOST%",
					"lb":      "%DYNAMIC_METADATA(" + protocol.MetadataNamespaceLB + ":" + protocol.MetadataKeyDestination + ")%",
					"panicky": "%DYNAMIC_METADATA(panicky)%", "id": "%REQ(X-TEST-ID)%", "path": "%REQ(:PATH)% by %REQ(USER-AGENT)%",
					"route": "%ROUTE_NAME%",
				})}})}},
			{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: typed(t, &filev3.FileAccessLog{Path: textLog})}},
		}
	}
	a := startADS(t)
	setADS(t, a, "1", resources{}.
		add(resource.ListenerType, listener(t, "l", "r", logs, panickyFilter(t))).
		add(resource.RouteType, routeConfig("r", prefixRoute("pool", "/", "pool/p"))).
		add(resource.ClusterType, originalDstCluster("pool/p")))
	h := startPanickyHost(t, a)
	for _, hdr := range []map[string]string{
		{testIDHeader: "ok", "x-lb-endpoint": b.Addr, "user-agent": "t"},
		{testIDHeader: "uh", "x-panic": "encode-headers-not"}, // no endpoint: UH
		// a ClearRouteCache after the response headers went out changes
		// nothing: the HCM has blocked its route cache
		{testIDHeader: "clr", "x-lb-endpoint": b.Addr, "x-clear-route": "encode-data"},
	} {
		_, _, _ = getWith(t, h, hdr)
	}
	var lines []map[string]any
	poll.Eventually(t, "three access log lines", func() bool {
		lines = readJSONLines(t, jsonLog)
		return len(lines) == 3
	})
	byID := map[string]map[string]any{}
	for _, l := range lines {
		byID[l["id"].(string)] = l
	}
	ok, uh := byID["ok"], byID["uh"]
	if ok["code"] != float64(200) || ok["flags"] != "-" || ok["upstream"] != b.Addr || ok["lb"] != b.Addr ||
		ok["path"] != "/x by t" {
		t.Errorf("200 line %v", ok)
	}
	if clr := byID["clr"]; clr["code"] != float64(200) || clr["route"] != "pool" || ok["route"] != "pool" {
		t.Errorf("route names after a ClearRouteCache in EncodeData: %v, and without: %v; want pool", clr["route"], ok["route"])
	}
	if md, _ := ok["panicky"].(map[string]any); md["async"] != "1" {
		t.Errorf("metadata set from a goroutine missing from the log: %v", ok["panicky"])
	}
	if uh["code"] != float64(503) || uh["flags"] != "UH" || uh["upstream"] != nil {
		t.Errorf("UH line %v", uh)
	}
	text, err := os.ReadFile(textLog)
	if err != nil || !strings.Contains(string(text), `"GET /x HTTP/1.1" 200 - 0 `) ||
		!strings.Contains(string(text), `"GET /x HTTP/1.1" 503 UH 0 19 `) {
		t.Errorf("default format log:\n%s (%v)", text, err)
	}
}

func readJSONLines(t *testing.T, path string) []map[string]any {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("access log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// A route table evaluated as Envoy's RouteMatcher does.
func TestRouteTableMatching(t *testing.T) {
	t.Parallel()
	b1, b2, b3 := startBackend(t, "b1"), startBackend(t, "b2"), startBackend(t, "b3")
	header := func(name, exact string, invert bool) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{Name: name, InvertMatch: invert, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: exact}}}}
	}
	withHeaders := func(r *routev3.Route, hs ...*routev3.HeaderMatcher) *routev3.Route {
		r.Match.Headers = hs
		return r
	}
	exact := prefixRoute("exact", "", "c2")
	exact.Match.PathSpecifier = &routev3.RouteMatch_Path{Path: "/exact"}
	sep := prefixRoute("sep", "", "c3")
	sep.Match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/sep"}
	nocase := prefixRoute("nocase", "/CaSe", "c2")
	nocase.Match.CaseSensitive = wrapperspb.Bool(false)
	rewrite := prefixRoute("rewrite", "/old/", "c3")
	rewrite.GetRoute().PrefixRewrite = "/new/"
	rewrite.GetRoute().HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "upstream.example"}
	rewrite.RequestHeadersToAdd = []*corev3.HeaderValueOption{
		{Header: &corev3.HeaderValue{Key: "x-added", Value: "route"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
		{Header: &corev3.HeaderValue{Key: "x-appended", Value: "route"}},
	}
	rewrite.RequestHeadersToRemove = []string{"x-drop"}
	direct := &routev3.Route{Name: "direct", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/direct"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 451,
			Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "direct"}}}},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-direct", Value: "1"}}}}
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{
		{Name: "exact-host", Domains: []string{"api.example.com"}, Routes: []*routev3.Route{prefixRoute("h", "/", "c3")}},
		{Name: "suffix", Domains: []string{"*.example.com"}, Routes: []*routev3.Route{prefixRoute("s", "/", "c2")}},
		{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{
			withHeaders(prefixRoute("hdr", "/", "c2"), header("x-pick", "two", false)),
			withHeaders(prefixRoute("not", "/", "c3"), header("x-pick", "one", true),
				&routev3.HeaderMatcher{Name: "x-pick", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}),
			exact, sep, nocase, rewrite, direct, prefixRoute("rest", "/", "c1"),
		}},
	}}
	a := startADS(t)
	setADS(t, a, "1", resources{}.
		add(resource.ListenerType, listener(t, "l", "r", nil)).
		add(resource.RouteType, rc).
		add(resource.ClusterType, staticCluster(t, "c1", b1.Addr), staticCluster(t, "c2", b2.Addr), staticCluster(t, "c3", b3.Addr)))
	h := startXDSHost(t, a.Addr, harness.XDSHostOptions{Listener: "l"})
	cases := []struct {
		name, host, path string
		header           map[string]string
		want             string // backend, or "451" for the direct response
	}{
		{"default vhost, catch-all", "", "/x", nil, "b1"},
		{"exact domain", "api.example.com", "/x", nil, "b3"},
		{"suffix wildcard, port ignored? no: exact host only", "www.example.com", "/x", nil, "b2"},
		{"header exact", "", "/x", map[string]string{"x-pick": "two"}, "b2"},
		{"inverted header match", "", "/x", map[string]string{"x-pick": "three"}, "b3"},
		{"path exact", "", "/exact", nil, "b2"},
		{"path exact, query ignored", "", "/exact?a=1", nil, "b2"},
		{"path exact, a longer path falls through", "", "/exactly", nil, "b1"},
		{"path separated prefix", "", "/sep/x", nil, "b3"},
		{"path separated prefix needs a separator", "", "/seperate", nil, "b1"},
		{"case-insensitive prefix", "", "/case/x", nil, "b2"},
		{"case-sensitive by default", "", "/EXACT", nil, "b1"},
		{"direct response", "", "/direct", nil, "451"},
	}
	for _, c := range cases {
		req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, h.URL(c.path), nil)
		if c.host != "" {
			req.Host = c.host
		}
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := bodyOf(resp)
		resp.Body.Close()
		got := resp.Header.Get("x-backend")
		if c.want == "451" {
			if resp.StatusCode != 451 || body != "direct" || resp.Header.Get("x-direct") != "1" {
				t.Errorf("%s: %d %q x-direct %q", c.name, resp.StatusCode, body, resp.Header.Get("x-direct"))
			}
			continue
		}
		if got != c.want {
			t.Errorf("%s: served by %q (%d %s), want %s", c.name, got, resp.StatusCode, body, c.want)
		}
	}
	// rewrites and header mutations on the way up
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, h.URL("/old/path"), nil)
	req.Header.Set("x-added", "client")
	req.Header.Set("x-appended", "client")
	req.Header.Set("x-drop", "1")
	req.Header.Set(testIDHeader, "rw")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	_, r := received(t, "rw", b3)
	if r.Path != "/new/path" || r.Header.Get("x-added") != "route" || len(r.Header.Values("x-appended")) != 2 ||
		r.Header.Get("x-drop") != "" || r.Header.Get("x-envoy-original-path") != "/old/path" {
		t.Errorf("rewritten request: path %s headers %v", r.Path, r.Header)
	}
	// host_rewrite_literal keeps the client's host in x-envoy-original-host
	if r.Host != "upstream.example" || r.Header.Get("x-envoy-original-host") != h.Addr {
		t.Errorf("rewritten host %q, x-envoy-original-host %q; want upstream.example and %s", r.Host, r.Header.Get("x-envoy-original-host"), h.Addr)
	}
}

// A route's timeout (15 s unless set) answers 504 UT when the upstream
// does not answer in time; a route body limit raises the stream's.
func TestRouteTimeoutAndBufferLimit(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	b.HangOn = "HANG"
	const listenerLimit = 16 << 10
	slow := prefixRoute("slow", "/v1/", "pool/p1")
	slow.GetRoute().Timeout = durationpb.New(300 * time.Millisecond)
	slow.Match.Headers = []*routev3.HeaderMatcher{{Name: "x-slow", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}
	big := prefixRoute("big", "/v1/", "pool/p1")
	big.Match.Headers = []*routev3.HeaderMatcher{{Name: "x-big", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}
	big.PerRequestBufferLimitBytes = wrapperspb.UInt32(4 * listenerLimit)
	l := listener(t, "l", "r", nil, golangInline(t, inflowFilterConfig(t, inflowConfig(0, b))))
	l.PerConnectionBufferLimitBytes = wrapperspb.UInt32(listenerLimit)
	a := startADS(t)
	setADS(t, a, "1", resources{}.
		add(resource.ListenerType, l).
		add(resource.RouteType, routeConfig("r", slow, big, prefixRoute("rest", "/", "pool/p1"))).
		add(resource.ClusterType, originalDstCluster("pool/p1")))
	h := startXDSHost(t, a.Addr, harness.XDSHostOptions{Listener: "l"})
	post := func(body string, hdr ...string) (*http.Response, string) {
		req, _ := http.NewRequestWithContext(testContext(t), http.MethodPost, h.URL("/v1/chat/completions"), strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp, bodyOf(resp)
	}
	start := time.Now()
	if resp, body := post(chatBody("llama", "HANG"), "x-slow", "1"); resp.StatusCode != http.StatusGatewayTimeout || body != "upstream request timeout" {
		t.Errorf("hung upstream: %d %q, want 504 upstream request timeout", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the 300 ms route timeout took %v", d)
	}
	large := chatBody("llama", strings.Repeat("x", 2*listenerLimit))
	if resp, _ := post(large); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("over the listener's buffer limit: %d, want Envoy's 413", resp.StatusCode)
	}
	if resp, body := post(large, "x-big", "1"); resp.StatusCode != 200 {
		t.Errorf("under the route's raised limit: %d %s", resp.StatusCode, body)
	}
}

// Listeners warm on their RDS and ECDS resources before they take traffic,
// and go on without them after initial_fetch_timeout: no filter config
// answers 500 (NFCF).
func TestListenerWarmsOnWhatItReferences(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	a := startADS(t)
	partial := resources{}.
		add(resource.ListenerType, listener(t, "l", "r", nil, golangECDS("probe"))).
		add(resource.RouteType, routeConfig("r", prefixRoute("all", "/", "b"))).
		add(resource.ClusterType, staticCluster(t, "b", b.Addr))
	setADS(t, a, "1", partial)
	h := startXDSHost(t, a.Addr, harness.XDSHostOptions{Library: harness.Out(harness.ConfigProbePlugin + ".so"),
		InitialFetchTimeout: 2 * time.Second, Listener: "-"})
	ctx, cancel := context.WithTimeout(testContext(t), 500*time.Millisecond)
	defer cancel()
	if addr, err := h.ListenerAddr(ctx, "l"); err == nil {
		t.Fatalf("listener bound at %s before its filter config arrived", addr)
	}
	// past the initial fetch timeout it serves, without the filter: 500
	addr, err := h.ListenerAddr(testContext(t), "l")
	if err != nil {
		t.Fatal(err)
	}
	h.Addr = addr
	if resp, _, err := getWith(t, h, nil); err != nil || resp.StatusCode != 500 {
		t.Fatalf("without its ECDS config: %v %v, want 500", resp, err)
	}
	setADS(t, a, "2", probeState(t, "v1", b))
	awaitAccepted(t, h, "2", resource.ExtensionConfigType)
	if resp, _, err := getWith(t, h, nil); err != nil || resp.Header.Get(probeConfigHeader) != "v1" {
		t.Fatalf("with its ECDS config: %v %v", resp, err)
	}
}

// What envoyhost does not implement is refused by name (a NACK, the last
// good config kept), never ignored.
func TestUnmodelledConfigIsRefusedByName(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	good := func() resources {
		return resources{}.
			add(resource.ListenerType, listener(t, "l", "r", nil)).
			add(resource.RouteType, routeConfig("r", prefixRoute("all", "/", "b"))).
			add(resource.ClusterType, staticCluster(t, "b", b.Addr))
	}
	a := startADS(t)
	setADS(t, a, "1", good())
	h := startXDSHost(t, a.Addr, harness.XDSHostOptions{Listener: "l"})
	tls := &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: typed(t, &tlsv3.UpstreamTlsContext{Sni: "x"})}}
	cases := []struct {
		name  string
		edit  func(r resources)
		field string
	}{
		{"listener filters", func(r resources) {
			r[resource.ListenerType][0].(*listenerv3.Listener).ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector"}}
		}, "Listener l.listener_filters"},
		{"HCM tracing", func(r resources) {
			r[resource.ListenerType][0] = listener(t, "l", "r", func(h *hcmv3.HttpConnectionManager) {
				h.Tracing = &hcmv3.HttpConnectionManager_Tracing{}
			})
		}, ".tracing"},
		{"an HTTP filter other than golang", func(r resources) {
			r[resource.ListenerType][0] = listener(t, "l", "r", nil, &hcmv3.HttpFilter{Name: "envoy.filters.http.cors",
				ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: typed(t, &structpb.Struct{})}})
		}, "http_filters"},
		{"upstream TLS", func(r resources) { r[resource.ClusterType][0].(*clusterv3.Cluster).TransportSocket = tls }, "Cluster b.transport_socket"},
		{"weighted clusters", func(r resources) {
			rt := prefixRoute("all", "/", "b")
			rt.GetRoute().ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{}}
			r[resource.RouteType][0] = routeConfig("r", rt)
		}, ".weighted_clusters"},
		{"a regex path", func(r resources) {
			rt := prefixRoute("all", "/", "b")
			rt.Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}
			r[resource.RouteType][0] = routeConfig("r", rt)
		}, ".safe_regex"},
		{"an access log operator", func(r resources) {
			r[resource.ListenerType][0] = listener(t, "l", "r", func(h *hcmv3.HttpConnectionManager) {
				h.AccessLog = []*accesslogv3.AccessLog{{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{
					TypedConfig: typed(t, &filev3.FileAccessLog{Path: "/dev/null", AccessLogFormat: &filev3.FileAccessLog_LogFormat{
						LogFormat: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormat{TextFormat: "%UPSTREAM_PEER_SUBJECT%\n"}}}})}}}
			})
		}, "UPSTREAM_PEER_SUBJECT"},
	}
	for i, c := range cases {
		r := good()
		c.edit(r)
		setADS(t, a, fmt.Sprint("bad-", i), r)
		// the NACK of this version (a server may resend a refused version)
		var msgs []string
		for {
			nack, err := a.NACK(testContext(t))
			if err != nil {
				t.Fatalf("%s: no NACK naming %s; got %q", c.name, c.field, msgs)
			}
			msg := nack.GetErrorDetail().GetMessage()
			if strings.Contains(msg, c.field) {
				break
			}
			msgs = append(msgs, msg)
		}
		// still serving the last good config
		if resp, _, err := getWith(t, h, nil); err != nil || resp.Header.Get("x-backend") != "b" {
			t.Errorf("%s: after the NACK: %v %v", c.name, resp, err)
		}
	}
}

// A filter config the filter's own parser refuses is a NACK of the ECDS
// resource, as in Envoy (FilterConfig::newGoPluginConfig throws "golang
// filter failed to parse plugin config": contrib/golang/filters/http/source/
// golang_filter.cc:1815-1823), and the listener keeps the last good config.
func TestFilterConfigTheFilterRefusesIsNACKed(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	state := func(filterCfg map[string]any) resources {
		return resources{}.
			add(resource.ListenerType, listener(t, "l", "r", nil, golangECDS(protocol.PluginName))).
			add(resource.RouteType, routeConfig("r", prefixRoute("all", "/", "pool/p1"))).
			add(resource.ClusterType, originalDstCluster("pool/p1")).
			add(resource.ExtensionConfigType, ecdsResource(t, protocol.PluginName, inflowFilterConfig(t, filterCfg)))
	}
	a := startADS(t)
	setADS(t, a, "1", state(inflowConfig(0, b)))
	h := startXDSHost(t, a.Addr, harness.XDSHostOptions{Listener: "l"})
	chat := func() int {
		resp, err := http.Post(h.URL("/v1/chat/completions"), "application/json", strings.NewReader(chatBody("llama", "hi")))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	if got := chat(); got != 200 {
		t.Fatalf("with a good filter config: %d", got)
	}
	bad := inflowConfig(0, b)
	bad["models"] = []any{map[string]any{"name": "llama", "pool": "no-such-pool"}}
	setADS(t, a, "2", state(bad))
	nack, err := a.NACK(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if msg := nack.GetErrorDetail().GetMessage(); nack.GetTypeUrl() != resource.ExtensionConfigType ||
		!strings.Contains(msg, "failed to parse plugin config") || nack.GetResponseNonce() == "" {
		t.Errorf("NACK %s %q (nonce %q), want the ECDS resource refused by the filter's parser",
			nack.GetTypeUrl(), msg, nack.GetResponseNonce())
	}
	if got := chat(); got != 200 {
		t.Errorf("after the NACK: %d, want the last good config serving", got)
	}
}
