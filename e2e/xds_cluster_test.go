package e2e

import (
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	credinjv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/credential_injector/v3"
	upcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	genericv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/injected_credentials/generic/v3"
	leastreqv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	overridehostv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// Clusters the control plane does not emit yet (or emits through cp11's
// translator), built by hand: EDS with OverrideHost and retries
// (CONTRACTS item 2), a backend with the credential injector and a
// file-based SDS secret (item 3).

// overrideHostCluster is "pool/p" over EDS, picked by OverrideHost from the
// envoy.lb metadata list, least request when the list runs out.
func overrideHostCluster(t *testing.T) *clusterv3.Cluster {
	c := edsCluster("pool/p")
	c.LoadBalancingPolicy = &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{
		TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "envoy.load_balancing_policies.override_host", TypedConfig: typed(t, &overridehostv3.OverrideHost{
			OverrideHostSources: []*overridehostv3.OverrideHost_OverrideHostSource{{Metadata: &metadatav3.MetadataKey{
				Key: protocol.MetadataNamespaceLB, Path: []*metadatav3.MetadataKey_PathSegment{{Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: protocol.MetadataKeyDestination}}},
			}}},
			FallbackPolicy: &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{
				TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "envoy.load_balancing_policies.least_request", TypedConfig: typed(t, &leastreqv3.LeastRequest{})},
			}}},
		})},
	}}}
	return c
}

// retryRoute walks the list: connect failure, reset and 503 retried.
func retryRoute(retries uint32) *routev3.Route {
	r := prefixRoute("pool", "/", "pool/p")
	r.GetRoute().RetryPolicy = &routev3.RetryPolicy{
		RetryOn: "connect-failure,reset,retriable-status-codes", RetriableStatusCodes: []uint32{503},
		NumRetries: wrapperspb.UInt32(retries),
	}
	return r
}

// panickyState: the panicky test filter sets envoy.lb metadata from the
// x-lb-endpoint header, so a test chooses the list.
func overrideState(t *testing.T, retries uint32, members ...string) resources {
	return resources{}.
		add(resource.ListenerType, listener(t, "l", "r", nil, golangInline(t, golangConfig(t, harness.PanickyPlugin, "", map[string]any{})))).
		add(resource.RouteType, routeConfig("r", retryRoute(retries))).
		add(resource.ClusterType, overrideHostCluster(t)).
		add(resource.EndpointType, assignment(t, "pool/p", members...))
}

func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// halfResponder answers 200 with half a body, then closes: a reset after
// response headers went downstream.
func halfResponder(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			_, _ = c.Read(buf)
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func getWith(t *testing.T, h *harness.Host, header map[string]string) (*http.Response, string, error) {
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, h.URL("/x"), nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func TestOverrideHostWalksTheListOnRetries(t *testing.T) {
	t.Parallel()
	bad, good, spare := startBackend(t, "bad"), startBackend(t, "good"), startBackend(t, "spare")
	bad.Status = http.StatusServiceUnavailable
	dead, half := deadAddr(t), halfResponder(t)
	a := startADS(t)
	setADS(t, a, "1", overrideState(t, 2, dead, bad.Addr, good.Addr, spare.Addr, half))
	h := startXDSHost(t, a.Addr, harness.XDSHostOptions{Listener: "l", Library: harness.Out(harness.PanickyPlugin + ".so")})
	retries := func() int64 { return stat(t, h, "cluster.pool/p.upstream_rq_retry") }

	cases := []struct {
		name    string
		list    string
		want    string // x-backend of the answer; "" for a 503
		retries int64
	}{
		{"connect failure, then 503, then the third", strings.Join([]string{dead, bad.Addr, good.Addr}, ","), "good", 2},
		{"non-members are skipped, not tried", "10.255.255.1:9, " + good.Addr, "good", 0},
		{"two retries only: the 503 goes out", strings.Join([]string{dead, dead, bad.Addr, good.Addr}, ","), "", 2},
	}
	for _, c := range cases {
		before := retries()
		resp, body, err := getWith(t, h, map[string]string{"x-lb-endpoint": c.list})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := resp.Header.Get("x-backend")
		switch {
		case c.want == "" && resp.StatusCode != http.StatusServiceUnavailable:
			t.Errorf("%s: status %d from %q (%s), want the last attempt's 503", c.name, resp.StatusCode, got, body)
		case c.want != "" && (resp.StatusCode != 200 || got != c.want):
			t.Errorf("%s: status %d from %q (%s), want %s", c.name, resp.StatusCode, got, body, c.want)
		}
		if n := retries() - before; n != c.retries {
			t.Errorf("%s: %d retries, want %d", c.name, n, c.retries)
		}
	}
	// a list with no member left: the fallback policy picks
	setADS(t, a, "2", overrideState(t, 2, spare.Addr))
	awaitAccepted(t, h, "2", resource.EndpointType)
	if resp, _, err := getWith(t, h, map[string]string{"x-lb-endpoint": "10.255.255.1:9"}); err != nil || resp.Header.Get("x-backend") != "spare" {
		t.Errorf("no listed member: %v %v, want the fallback's pick (spare)", resp, err)
	}
	setADS(t, a, "3", overrideState(t, 2, half, spare.Addr))
	awaitAccepted(t, h, "3", resource.EndpointType)
	// once response headers went downstream there is no retry: the
	// truncated response is reset, and the next endpoint never sees it
	before := len(spare.Requests())
	resp, _, err := getWith(t, h, map[string]string{"x-lb-endpoint": half + "," + spare.Addr})
	if err == nil && resp.StatusCode == 200 {
		t.Error("a response cut after its headers arrived whole")
	}
	if len(spare.Requests()) != before {
		t.Error("retried after the response had started downstream")
	}
}

// writeAtomic replaces path as Kubernetes and careful operators do: a
// temporary file in the same directory, then a rename over it.
func writeAtomic(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// sdsFile is the shipped shape (CONTRACTS item 3): one generic secret
// whose value is the key file beside it.
func sdsFile(name, keyFile string) string {
	return fmt.Sprintf(`resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: %s
  generic_secret:
    secret:
      filename: %s
`, name, keyFile)
}

// credentialCluster reaches b with the credential injector as an upstream
// HTTP filter reading secret name from the SDS file at path (a path in the
// Envoy container), reloaded on moves in its directory.
func credentialCluster(t *testing.T, b *harness.Backend, name, path string) *clusterv3.Cluster {
	c := staticCluster(t, "backend/b", b.Addr)
	gen := &genericv3.Generic{
		Credential: &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
				Path: path, WatchedDirectory: &corev3.WatchedDirectory{Path: filepath.Dir(path)}}}}},
		Header: "authorization", HeaderValuePrefix: "Bearer ",
	}
	ci := &credinjv3.CredentialInjector{Overwrite: true, Credential: &corev3.TypedExtensionConfig{
		Name: "envoy.http.injected_credentials.generic", TypedConfig: typed(t, gen)}}
	po := &upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: "envoy.filters.http.credential_injector", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: typed(t, ci)}},
			{Name: "envoy.filters.http.upstream_codec", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: typed(t, &upcodecv3.UpstreamCodec{})}},
		},
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(t, po)}
	return c
}

func TestCredentialInjectorReadsTheMountedSecret(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	// the Envoy container's /etc/inflow/secrets is this directory
	const container = "/etc/inflow/secrets"
	dir := t.TempDir()
	writeAtomic(t, filepath.Join(dir, "openai.yaml"), sdsFile("openai", container+"/openai.key"))
	writeAtomic(t, filepath.Join(dir, "openai.key"), "sk-first")
	state := func(secret, sds string) resources {
		return resources{}.
			add(resource.ListenerType, listener(t, "l", "r", nil, golangInline(t, golangConfig(t, harness.PassthroughPlugin, "", map[string]any{})))).
			add(resource.RouteType, routeConfig("r", prefixRoute("b", "/", "backend/b"))).
			add(resource.ClusterType, credentialCluster(t, b, secret, container+"/"+sds))
	}
	a := startADS(t)
	setADS(t, a, "1", state("openai", "openai.yaml"))
	h := startXDSHost(t, a.Addr, harness.XDSHostOptions{Listener: "l", Library: harness.Out(harness.PassthroughPlugin + ".so"),
		Mounts: map[string]string{container: dir}})
	n := 0
	auth := func() (int, string) {
		t.Helper()
		n++
		id := fmt.Sprint("k", n)
		resp, _, err := getWith(t, h, map[string]string{"authorization": "Bearer client-key", testIDHeader: id})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			return resp.StatusCode, ""
		}
		_, r := received(t, id, b)
		return 200, r.Header.Get("authorization")
	}
	if code, got := auth(); code != 200 || got != "Bearer sk-first" {
		t.Fatalf("%d %q, want the injected key replacing the client's", code, got)
	}
	// rotation: the key file is replaced, the next requests carry the new key
	writeAtomic(t, filepath.Join(dir, "openai.key"), "sk-second")
	poll.Eventually(t, "the rotated key", func() bool { _, got := auth(); return got == "Bearer sk-second" })
	// no key file: the injection fails, 401 (Failed to inject credential.)
	if err := os.Remove(filepath.Join(dir, "openai.key")); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, filepath.Join(dir, "openai.yaml"), sdsFile("openai", container+"/openai.key")) // a move in the watched directory
	poll.Eventually(t, "the 401 without a key", func() bool { code, _ := auth(); return code == http.StatusUnauthorized })
	// a secret name the file does not hold: the SDS update is refused, no key
	writeAtomic(t, filepath.Join(dir, "openai.key"), "sk-third")
	setADS(t, a, "2", state("team-key", "openai.yaml"))
	awaitAccepted(t, h, "2", resource.ClusterType)
	if code, _ := auth(); code != http.StatusUnauthorized {
		t.Errorf("secret name mismatch: status %d, want 401", code)
	}
	// an SDS file that does not exist rejects the cluster (NACK)
	setADS(t, a, "3", state("openai", "missing.yaml"))
	nack, err := a.NACK(testContext(t))
	if err != nil || !strings.Contains(nack.GetErrorDetail().GetMessage(), "missing.yaml") {
		t.Errorf("a missing SDS file: %v %v, want a NACK naming it", nack.GetErrorDetail(), err)
	}
}

// tlsCluster reaches addr over TLS verified against caFile and san.
func tlsCluster(t *testing.T, addr, caFile, sni, san string) *clusterv3.Cluster {
	c := staticCluster(t, "backend/tls", addr)
	c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: typed(t, &tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: &tlsv3.CommonTlsContext{
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: caFile}},
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_DNS,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san}}}},
			}}}}),
	}}
	return c
}

// An external backend over TLS, as the control plane emits it for https
// base URLs: verified against its CA bundle and subject alt name; a
// certificate that does not match is a connection failure (503 UF).
func TestUpstreamTLSVerifiesTheBackend(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-sni", r.TLS.ServerName)
		fmt.Fprint(w, "over tls")
	}))
	// OpenSSL aborting a handshake on a name mismatch makes Go's server log
	// "bad record MAC" (so does openssl s_client): expected here, not noise
	// for the test output
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(srv.URL, "https://")
	state := func(san string) resources {
		return resources{}.
			add(resource.ListenerType, listener(t, "l", "r", nil)).
			add(resource.RouteType, routeConfig("r", prefixRoute("b", "/", "backend/tls"))).
			add(resource.ClusterType, tlsCluster(t, addr, ca, "example.com", san))
	}
	a := startADS(t)
	setADS(t, a, "1", state("example.com")) // httptest's certificate names example.com
	h := startXDSHost(t, a.Addr, harness.XDSHostOptions{Listener: "l"})
	resp, body, err := getWith(t, h, nil)
	if err != nil || resp.StatusCode != 200 || body != "over tls" || resp.Header.Get("x-sni") != "example.com" {
		t.Fatalf("over TLS: %v %q %v", resp, body, err)
	}
	setADS(t, a, "2", state("api.openai.com"))
	awaitAccepted(t, h, "2", resource.ClusterType)
	resp, body, err = getWith(t, h, nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "connection failure") {
		t.Errorf("a certificate for another name: %v %q %v, want 503 upstream connect error", resp, body, err)
	}
}

// The whole chain as the control plane ships it: inflow.so puts its
// ordered endpoint list in envoy.lb metadata, the pool is an EDS cluster
// with OverrideHost, and the route's retry policy (503, connect failure)
// walks the list. A server answering 503 to inference (its /metrics
// healthy, so the scheduler still picks it) costs a retry, never a failed
// request.
func TestInflowRetriesAlongItsListThroughTheControlPlane(t *testing.T) {
	t.Parallel()
	bad, good := startBackend(t, "bad"), startBackend(t, "good")
	bad.Status = http.StatusServiceUnavailable
	h, _ := startInflow(t, cpConfig(inflowConfig(0, bad, good)), harness.XDSHostOptions{})
	waitStat(t, h, protocol.PoolStat("p1", protocol.PoolStatStaleEndpoints), func(v int64) bool { return v == 0 })
	c := client(h)
	sent := 0
	// distinct prompts, so prefix affinity does not pin every pick to one
	// server; until the failing one was picked a few times
	for sent < 60 && len(bad.Requests()) < 3 {
		prompt := fmt.Sprintf("%d: %s", sent, strings.Repeat(string(rune('a'+sent%26)), 64))
		if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", prompt)); err != nil {
			t.Fatalf("request %d: %v", sent, err)
		}
		sent++
	}
	if len(bad.Requests()) == 0 {
		t.Fatalf("the scheduler never picked the failing server in %d requests: nothing was retried", sent)
	}
	if n := stat(t, h, "cluster.pool/p1.upstream_rq_retry"); n != int64(len(bad.Requests())) {
		t.Errorf("upstream_rq_retry = %d, want one per request the failing server got (%d)", n, len(bad.Requests()))
	}
	if n := len(good.Requests()); n != sent {
		t.Errorf("the good server answered %d of %d", n, sent)
	}
}
