package translator_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	credentialinjectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/credential_injector/v3"
	genericv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/injected_credentials/generic/v3"
	overridehostv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

var fullInput = filepath.Join("testdata", "in", "full.yaml")

func translate(t *testing.T, path string) *translator.Resources {
	t.Helper()
	res, err := translator.Translate(load(t, path))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

var allTypes = []string{resource.ListenerType, resource.ExtensionConfigType, resource.RouteType, resource.ClusterType, resource.EndpointType}

func TestEveryResourceValidatesAndSnapshotIsConsistent(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "in", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			res := translate(t, in)
			byType := res.ByType()
			for _, typ := range allTypes {
				for _, r := range byType[typ] {
					if err := r.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
						t.Errorf("%s: %v", typ, err)
					}
				}
			}
			if len(byType[resource.ExtensionConfigType]) != 1 {
				t.Errorf("%d ECDS resources, want the one filter config", len(byType[resource.ExtensionConfigType]))
			}
			snap, err := cachev3.NewSnapshot("1", byType)
			if err != nil {
				t.Fatal(err)
			}
			if err := snap.Consistent(); err != nil {
				t.Fatal(err)
			}
			if err := res.CheckExtensionReferences(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestExtensionReferencesAreChecked(t *testing.T) {
	res := translate(t, fullInput)
	missing := *res
	missing.Extensions = nil
	if err := missing.CheckExtensionReferences(); !errors.Is(err, translator.ErrReference) || !strings.Contains(err.Error(), `subscribes to "inflow"`) {
		t.Errorf("listeners without their filter config: %v", err)
	}
	orphan := *res
	orphan.Listeners = nil
	if err := orphan.CheckExtensionReferences(); !errors.Is(err, translator.ErrReference) || !strings.Contains(err.Error(), "no listener subscribes") {
		t.Errorf("filter config without listeners: %v", err)
	}
}

func marshalAll(t *testing.T, res *translator.Resources, types ...string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	byType := res.ByType()
	for _, typ := range types {
		for _, r := range byType[typ] {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			out[typ+"/"+cachev3.GetResourceName(r)] = b
		}
	}
	return out
}

// Same input, same bytes: Envoy treats a byte-different listener as a new
// one and drains connections, and skips an ECDS update whose bytes did not
// change, so map order inside Anys must not vary.
func TestTranslateIsDeterministic(t *testing.T) {
	want := marshalAll(t, translate(t, fullInput), allTypes...)
	for i := range 20 {
		got := marshalAll(t, translate(t, fullInput), allTypes...)
		for name := range want {
			if !bytes.Equal(got[name], want[name]) {
				t.Fatalf("translation %d: %s differs", i, name)
			}
		}
	}
}

// Models, pools, endpoints and objectives live in the ECDS resource (and,
// for pools, in CDS/EDS/RDS): editing them must leave every listener
// byte-identical, or Envoy drains its connections.
func TestFilterConfigEditsLeaveListenersUnchanged(t *testing.T) {
	base := load(t, fullInput)
	edits := map[string]func(c *spec.Config){
		"endpoint added": func(c *spec.Config) {
			c.Pools[0].Endpoints = append(slices.Clone(c.Pools[0].Endpoints), "10.0.1.99:8000")
		},
		"endpoints replaced": func(c *spec.Config) { c.Pools[2].Endpoints = []string{"10.0.2.11:8000", "10.0.2.12:8000"} },
		"pool added": func(c *spec.Config) {
			c.Pools = append(slices.Clone(c.Pools), config.Pool{Name: "new", Endpoints: []string{"10.9.0.1:8000"}})
			c.Models = append(slices.Clone(c.Models), config.Model{Name: "new-model", Pool: "new"})
		},
		"model removed": func(c *spec.Config) { c.Models = slices.Clone(c.Models[1:]) },
		"destination mode changed": func(c *spec.Config) {
			c.Pools = slices.Clone(c.Pools)
			c.Pools[0].Destination = config.DestinationOriginalDst
		},
		"objectives changed": func(c *spec.Config) { c.Objectives = map[string]int{"batch": -2} },
		"scheduler tuned": func(c *spec.Config) {
			c.Pools = slices.Clone(c.Pools)
			c.Pools[1].Scheduler = &config.Scheduler{MetricsFormat: "sglang"}
		},
	}
	before, err := translator.Translate(base)
	if err != nil {
		t.Fatal(err)
	}
	wantListeners := marshalAll(t, before, resource.ListenerType)
	wantFilter := marshalAll(t, before, resource.ExtensionConfigType)
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			c := *base
			edit(&c)
			after, err := translator.Translate(&c)
			if err != nil {
				t.Fatal(err)
			}
			got := marshalAll(t, after, resource.ListenerType)
			for l, b := range wantListeners {
				if !bytes.Equal(got[l], b) {
					t.Errorf("%s changed: Envoy would drain its connections", l)
				}
			}
			f := marshalAll(t, after, resource.ExtensionConfigType)
			if bytes.Equal(f[resource.ExtensionConfigType+"/"+translator.FilterExtensionName], wantFilter[resource.ExtensionConfigType+"/"+translator.FilterExtensionName]) {
				t.Error("the edit did not reach the filter config")
			}
		})
	}
}

// The filter must accept, with its own parser, exactly the plugin_config
// the ECDS resource carries, and it must equal the config the file
// describes; every listener takes it from there.
func TestPluginConfigIsAcceptedByTheFilterParser(t *testing.T) {
	c := load(t, fullInput)
	res, err := translator.Translate(c)
	if err != nil {
		t.Fatal(err)
	}
	fc := c.FilterConfig()
	fc.Version = config.SchemaVersion // the writer stamps its schema version
	want, err := json.Marshal(fc)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range res.Listeners {
		names, err := translator.ExtensionNames(l)
		if err != nil || !slices.Equal(names, []string{translator.FilterExtensionName}) {
			t.Fatalf("listener %s subscribes to %v (%v)", l.GetName(), names, err)
		}
		g, err := translator.GolangFilter(l, translator.ExtensionsByName(res.Extensions))
		if err != nil {
			t.Fatal(err)
		}
		if g.GetPluginName() != protocol.PluginName || g.GetLibraryPath() != "/opt/inflow/inflow.so" || g.GetLibraryId() == "" {
			t.Errorf("listener %s: plugin %q library %q id %q", l.GetName(), g.GetPluginName(), g.GetLibraryPath(), g.GetLibraryId())
		}
		parsed, err := config.FromAny(g.GetPluginConfig())
		if err != nil {
			t.Fatalf("listener %s: filter rejects its config: %v", l.GetName(), err)
		}
		got, err := json.Marshal(parsed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("listener %s: filter sees\n%s\nwant\n%s", l.GetName(), got, want)
		}
	}
}

// No resource holds a key or anything that could be one: the control
// plane never has keys, and backends name secret files instead.
func TestNoCredentialInAnyResource(t *testing.T) {
	res := translate(t, fullInput)
	for name, b := range marshalAll(t, res, allTypes...) {
		for _, bad := range []string{"Bearer sk", "inline_string", "generic_secret"} {
			if bytes.Contains(b, []byte(bad)) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
	for _, rc := range res.Routes {
		for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
			for _, h := range r.GetRequestHeadersToAdd() {
				if strings.EqualFold(h.GetHeader().GetKey(), "authorization") {
					t.Errorf("route %s sets authorization", r.GetName())
				}
			}
		}
	}
}

func cluster(t *testing.T, res *translator.Resources, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range res.Clusters {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("no cluster %s", name)
	return nil
}

func route(t *testing.T, res *translator.Resources, name string) *routev3.Route {
	t.Helper()
	for _, r := range res.Routes[0].GetVirtualHosts()[0].GetRoutes() {
		if r.GetName() == name {
			return r
		}
	}
	t.Fatalf("no route %s", name)
	return nil
}

// The credential injector sits on the backend's cluster as an upstream
// filter and reads the key from the SDS file the config names.
func TestBackendKeyComesFromEnvoysSecretFile(t *testing.T) {
	res := translate(t, fullInput)
	tests := []struct {
		backend, file, secret, header, prefix string
	}{
		{"openai", "/etc/inflow/secrets/openai.yaml", "openai", "authorization", "Bearer "},
		{"azure", "/etc/inflow/secrets/azure.yaml", "azure-openai", "api-key", ""},
	}
	for _, tt := range tests {
		t.Run(tt.backend, func(t *testing.T) {
			c := cluster(t, res, translator.BackendClusterName(tt.backend))
			var opts upstreamhttpv3.HttpProtocolOptions
			if err := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(&opts); err != nil {
				t.Fatal(err)
			}
			fs := opts.GetHttpFilters()
			if len(fs) != 2 || fs[0].GetName() != "envoy.filters.http.credential_injector" || fs[1].GetName() != "envoy.filters.http.upstream_codec" {
				t.Fatalf("upstream filters %v", fs)
			}
			var inj credentialinjectorv3.CredentialInjector
			if err := fs[0].GetTypedConfig().UnmarshalTo(&inj); err != nil {
				t.Fatal(err)
			}
			var g genericv3.Generic
			if err := inj.GetCredential().GetTypedConfig().UnmarshalTo(&g); err != nil {
				t.Fatal(err)
			}
			src := g.GetCredential().GetSdsConfig().GetPathConfigSource()
			switch {
			case !inj.GetOverwrite() || inj.GetAllowRequestWithoutCredential():
				t.Errorf("injector %v: must overwrite the client's header and never send without a key", &inj)
			case g.GetCredential().GetName() != tt.secret || src.GetPath() != tt.file || src.GetWatchedDirectory().GetPath() != filepath.Dir(tt.file):
				t.Errorf("secret %v", g.GetCredential())
			case g.GetHeader() != tt.header || g.GetHeaderValuePrefix() != tt.prefix:
				t.Errorf("header %q prefix %q", g.GetHeader(), g.GetHeaderValuePrefix())
			}
		})
	}
	if c := cluster(t, res, translator.BackendClusterName("tgi")); c.GetTypedExtensionProtocolOptions() != nil {
		t.Error("a backend without a key gets no injector")
	}
}

func TestLimitsSizeEnvoyBuffers(t *testing.T) {
	tests := []struct {
		in      string
		maxBody int64
	}{
		{filepath.Join("testdata", "in", "minimal.yaml"), config.DefaultMaxRequestBodyBytes},
		{fullInput, 16 << 20},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.in), func(t *testing.T) {
			res := translate(t, tt.in)
			for _, l := range res.Listeners {
				if got := int64(l.GetPerConnectionBufferLimitBytes().GetValue()); got <= tt.maxBody {
					t.Errorf("listener %s buffer %d <= max body %d: Envoy would 413 first", l.GetName(), got, tt.maxBody)
				}
			}
			for _, c := range res.Clusters {
				if got := int64(c.GetPerConnectionBufferLimitBytes().GetValue()); got <= tt.maxBody {
					t.Errorf("cluster %s buffer %d <= max body %d", c.GetName(), got, tt.maxBody)
				}
			}
		})
	}
}

// original_dst: the Endpoint Picker protocol's classic cluster, one
// address, no retries (they would go to the same address).
func TestOriginalDstPool(t *testing.T) {
	res := translate(t, fullInput)
	pool := cluster(t, res, translator.PoolClusterName("legacy"))
	od := pool.GetOriginalDstLbConfig()
	switch {
	case pool.GetType() != clusterv3.Cluster_ORIGINAL_DST:
		t.Errorf("type %v", pool.GetType())
	case pool.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED:
		t.Errorf("lb_policy %v", pool.GetLbPolicy())
	case !od.GetUseHttpHeader() || od.GetHttpHeaderName() != protocol.HeaderDestination:
		t.Errorf("original_dst_lb_config %v", od)
	case od.GetMetadataKey().GetKey() != protocol.MetadataNamespaceLB ||
		od.GetMetadataKey().GetPath()[0].GetKey() != protocol.MetadataKeyDestination:
		t.Errorf("metadata_key %v", od.GetMetadataKey())
	}
	if rp := route(t, res, "model/legacy").GetRoute().GetRetryPolicy(); rp != nil {
		t.Errorf("ORIGINAL_DST route retries: %v", rp)
	}
	for _, e := range res.Endpoints {
		if e.GetClusterName() == pool.GetName() {
			t.Error("an ORIGINAL_DST pool has no EDS members")
		}
	}
}

// override_host: an EDS cluster of exactly the pool's endpoints, picked by
// OverrideHost from the filter's metadata list, least request past it,
// and one retry per fallback on connect failure, reset and 503.
func TestOverrideHostPool(t *testing.T) {
	res := translate(t, fullInput)
	pool := cluster(t, res, translator.PoolClusterName("llama"))
	if pool.GetType() != clusterv3.Cluster_EDS || pool.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
		t.Fatalf("type %v eds %v", pool.GetType(), pool.GetEdsClusterConfig())
	}
	policies := pool.GetLoadBalancingPolicy().GetPolicies()
	if len(policies) != 1 || policies[0].GetTypedExtensionConfig().GetName() != "envoy.load_balancing_policies.override_host" {
		t.Fatalf("load_balancing_policy %v", pool.GetLoadBalancingPolicy())
	}
	var oh overridehostv3.OverrideHost
	if err := policies[0].GetTypedExtensionConfig().GetTypedConfig().UnmarshalTo(&oh); err != nil {
		t.Fatal(err)
	}
	src := oh.GetOverrideHostSources()
	if len(src) != 1 || src[0].GetHeader() != "" || src[0].GetMetadata().GetKey() != protocol.MetadataNamespaceLB ||
		src[0].GetMetadata().GetPath()[0].GetKey() != protocol.MetadataKeyDestination {
		t.Errorf("override_host_sources %v: want the metadata list alone", src)
	}
	if fb := oh.GetFallbackPolicy().GetPolicies(); len(fb) != 1 || fb[0].GetTypedExtensionConfig().GetName() != "envoy.load_balancing_policies.least_request" {
		t.Errorf("fallback_policy %v", oh.GetFallbackPolicy())
	}
	var members []string
	for _, e := range res.Endpoints {
		if e.GetClusterName() != pool.GetName() {
			continue
		}
		for _, lb := range e.GetEndpoints()[0].GetLbEndpoints() {
			a := lb.GetEndpoint().GetAddress().GetSocketAddress()
			members = append(members, fmt.Sprintf("%s %d", a.GetAddress(), a.GetPortValue()))
		}
	}
	if !slices.Equal(members, []string{"10.0.1.10 8000", "fd00::11 8000"}) {
		t.Errorf("EDS members %v", members)
	}
	rp := route(t, res, "model/llama-support").GetRoute().GetRetryPolicy()
	if rp.GetRetryOn() != "connect-failure,reset,retriable-status-codes" || rp.GetNumRetries().GetValue() != config.DefaultFallbacks ||
		!slices.Equal(rp.GetRetriableStatusCodes(), []uint32{503}) {
		t.Errorf("retry policy %v", rp)
	}
	if c := cluster(t, res, translator.PoolClusterName("empty")); c.GetType() != clusterv3.Cluster_EDS {
		t.Errorf("empty pool: type %v", c.GetType())
	}
}

func TestTranslateValidatesItsInput(t *testing.T) {
	_, err := translator.Translate(&spec.Config{})
	if !errors.Is(err, spec.ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
}

// In Envoy Gateway mode the filter config is for Envoy Gateway's listeners:
// none of the set's own needs to name it.
func TestEnvoyGatewayModeServesTheFilterConfigAlone(t *testing.T) {
	c := load(t, "testdata/in/minimal.yaml")
	c.Listeners = nil
	c.EnvoyGateway = &spec.EnvoyGateway{}
	res, err := translator.Translate(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Listeners) != 0 || len(res.Extensions) != 1 || !res.ForEnvoyGateway {
		t.Fatalf("%d listeners, %d extensions, for Envoy Gateway %v", len(res.Listeners), len(res.Extensions), res.ForEnvoyGateway)
	}
	if err := res.CheckExtensionReferences(); err != nil {
		t.Error(err)
	}
	c.EnvoyGateway = nil
	if _, err := translator.Translate(c); err == nil {
		t.Error("a config with neither listeners nor envoy_gateway translated")
	}
}

// Envoy Gateway's listeners carry their HTTP connection manager in the
// default filter chain: the filter is found there too.
func TestGolangFilterInTheDefaultFilterChain(t *testing.T) {
	res := translate(t, fullInput)
	l := proto.Clone(res.Listeners[0]).(*listenerv3.Listener)
	l.DefaultFilterChain, l.FilterChains = l.GetFilterChains()[0], nil
	if names, err := translator.ExtensionNames(l); err != nil || !slices.Equal(names, []string{translator.FilterExtensionName}) {
		t.Fatalf("default chain: subscribes to %v (%v)", names, err)
	}
	if _, err := translator.GolangFilter(l, translator.ExtensionsByName(res.Extensions)); err != nil {
		t.Fatal(err)
	}
}
