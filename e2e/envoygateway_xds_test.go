package e2e

import (
	"slices"
	"strings"
	"testing"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/e2e/egrun"
	"github.com/inflow-gateway/inflow/filter/config"
)

// Envoy Gateway's names for testdata/envoygateway/resources.yaml.
const (
	egHTTPListener  = "default/inflow/http"
	egHTTPSListener = "default/inflow/https"
	egTinyCluster   = "httproute/default/llm/rule/0"
	egLlamaCluster  = "httproute/default/llm/rule/1"
	egOtherCluster  = "httproute/default/other/rule/0"
)

// TestEnvoyGatewayTranslation runs the real Envoy Gateway twice on the
// same resources, alone and with Inflow's extension server, and compares
// what it serves its proxies: the filter is in both Gateway listeners, the
// InferencePool clusters are Inflow's pool destinations and their routes
// are bound to their pools, and everything else is byte for byte what
// Envoy Gateway makes on its own. The hook inputs of the second run are
// the extension server's golden inputs (controlplane/envoygateway).
func TestEnvoyGatewayTranslation(t *testing.T) {
	bin := envoyGatewayBinary(t)
	resources := egResources(t)

	// Without an extension manager Envoy Gateway cannot read InferencePools
	// at all; its routes to them are then invalid and not compared.
	alone := startEnvoyGateway(t, bin, withoutKind(resources, "InferencePool"), "")
	base := fetchServed(t, alone, func(s *egrun.Served) bool { return s.Listeners[egHTTPListener] != nil })
	_ = alone.Close() // one Envoy Gateway at a time: its ports are fixed

	cp, rec := startEnvoyGatewayMode(t, nil)
	eg := startEnvoyGateway(t, bin, resources, cp.ExtensionAddr)
	got := fetchServed(t, eg, func(s *egrun.Served) bool { return hasInflowFilter(s.Listeners[egHTTPListener]) })

	t.Run("listeners", func(t *testing.T) {
		if len(got.Listeners) != len(base.Listeners) {
			t.Fatalf("%d listeners, Envoy Gateway alone serves %d", len(got.Listeners), len(base.Listeners))
		}
		for name, l := range got.Listeners {
			want := base.Listeners[name]
			gateway := name == egHTTPListener || name == egHTTPSListener
			if gateway {
				checkInflowListener(t, l)
				l = withoutInflow(t, l, want)
			}
			if diff := cmp.Diff(want, l, protocmp.Transform()); diff != "" {
				t.Errorf("listener %s differs from Envoy Gateway's beyond the filter (-alone +with Inflow):\n%s", name, diff)
			}
		}
	})
	t.Run("clusters", func(t *testing.T) {
		checkPoolCluster(t, got.Clusters[egLlamaCluster], "default.llama", config.DestinationOverrideHost)
		checkPoolCluster(t, got.Clusters[egTinyCluster], "default.tiny", config.DestinationOriginalDst)
		for _, pool := range []string{egLlamaCluster, egTinyCluster} {
			// Envoy Gateway's own (empty) load assignment of the pool
			// cluster stays subscribed over ADS, else its ADS-mode cache
			// answers no EDS request of the proxy
			hold := got.Clusters[translator.AssignmentHoldPrefix+pool]
			if hold.GetEdsClusterConfig().GetServiceName() != pool || hold.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
				t.Errorf("no assignment hold for %s over ADS: %v", pool, hold)
			}
		}
		for name, c := range got.Clusters {
			if name == egLlamaCluster || name == egTinyCluster || strings.HasPrefix(name, translator.AssignmentHoldPrefix) {
				continue
			}
			if diff := cmp.Diff(base.Clusters[name], c, protocmp.Transform()); diff != "" {
				t.Errorf("cluster %s was changed (-alone +with Inflow):\n%s", name, diff)
			}
		}
		if got.Clusters[egOtherCluster] == nil {
			t.Errorf("the Backend's cluster %s is missing", egOtherCluster)
		}
	})
	t.Run("routes", func(t *testing.T) {
		for name, rc := range got.Routes {
			baseRoutes := routesByName(base.Routes[name])
			for _, vh := range rc.GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					switch r.GetRoute().GetCluster() {
					case egLlamaCluster:
						checkBoundRoute(t, r, "default.llama", 1)
					case egTinyCluster:
						checkBoundRoute(t, r, "default.tiny", 0)
					default:
						if diff := cmp.Diff(baseRoutes[r.GetName()], r, protocmp.Transform()); diff != "" {
							t.Errorf("route %s was changed (-alone +with Inflow):\n%s", r.GetName(), diff)
						}
					}
				}
			}
		}
	})
	t.Run("inflow xds", func(t *testing.T) {
		// What the proxies ask Inflow for through inflow-xds: the filter
		// config, and the pools' members by the clusters' service names, a
		// name Inflow does not know among them (delta answers the rest).
		node := &corev3.Node{Id: "proxy", Cluster: egGateway}
		ext, err := xdstest.DeltaFetch(testContext(t), cp.Addr, node, resource.ExtensionConfigType, translator.FilterExtensionName)
		if err != nil || ext[translator.FilterExtensionName] == nil {
			t.Fatalf("ECDS %s: %v, %v", translator.FilterExtensionName, ext, err)
		}
		llama := got.Clusters[egLlamaCluster].GetEdsClusterConfig().GetServiceName()
		eds, err := xdstest.DeltaFetch(testContext(t), cp.Addr, node, resource.EndpointType, llama, "pool/default.unknown")
		if err != nil || eds[llama] == nil {
			t.Fatalf("EDS %s: %v, %v", llama, eds, err)
		}
	})
	storeHookInputs(t, rec)
}

// withoutKind drops the YAML documents of kind.
func withoutKind(docs, kind string) string {
	var keep []string
	for _, d := range yamlDocs(docs) {
		if docKind(d) != kind {
			keep = append(keep, d)
		}
	}
	return egrun.Docs(keep...)
}

func hasInflowFilter(l *listenerv3.Listener) bool {
	for _, hcm := range egrun.HCMs(l) {
		for _, f := range hcm.GetHttpFilters() {
			if f.GetName() == translator.FilterExtensionName {
				return true
			}
		}
	}
	return false
}

// checkInflowListener: every HCM runs the filter right before the router,
// from ECDS through the bootstrap's cluster, maps Envoy's replies, and the
// listener buffers a whole body.
func checkInflowListener(t *testing.T, l *listenerv3.Listener) {
	t.Helper()
	hcms := egrun.HCMs(l)
	if len(hcms) == 0 {
		t.Fatalf("listener %s has no HTTP connection manager", l.GetName())
	}
	for _, hcm := range hcms {
		fs := hcm.GetHttpFilters()
		n := len(fs)
		if n < 2 || fs[n-2].GetName() != translator.FilterExtensionName || fs[n-1].GetName() != "envoy.filters.http.router" {
			t.Errorf("listener %s: http filters %v, want ..., %s, router", l.GetName(), filterNames(fs), translator.FilterExtensionName)
			continue
		}
		src := fs[n-2].GetConfigDiscovery().GetConfigSource()
		if c := src.GetApiConfigSource().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName(); c != "inflow-xds" {
			t.Errorf("listener %s: the filter's config comes through cluster %q, want inflow-xds", l.GetName(), c)
		}
		if hcm.GetLocalReplyConfig() == nil || len(hcm.GetLocalReplyConfig().GetMappers()) < 2 {
			t.Errorf("listener %s: no OpenAI local reply mappers", l.GetName())
		}
	}
	if got := int64(l.GetPerConnectionBufferLimitBytes().GetValue()); got < config.DefaultMaxRequestBodyBytes {
		t.Errorf("listener %s buffers %d bytes, less than a %d-byte body", l.GetName(), got, config.DefaultMaxRequestBodyBytes)
	}
}

func filterNames(fs []*hcmv3.HttpFilter) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.GetName())
	}
	return out
}

// withoutInflow is l with what the extension server adds taken out again:
// the filter, the local reply mappers, the raised buffer.
func withoutInflow(t *testing.T, l, alone *listenerv3.Listener) *listenerv3.Listener {
	t.Helper()
	l = proto.Clone(l).(*listenerv3.Listener)
	l.PerConnectionBufferLimitBytes = alone.GetPerConnectionBufferLimitBytes()
	chains := slices.Clone(l.GetFilterChains())
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(chains, dc)
	}
	for _, c := range chains {
		for _, f := range c.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if !f.GetTypedConfig().MessageIs(hcm) {
				continue
			}
			if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatal(err)
			}
			hcm.HttpFilters = slices.DeleteFunc(hcm.HttpFilters, func(f *hcmv3.HttpFilter) bool { return f.GetName() == translator.FilterExtensionName })
			hcm.LocalReplyConfig = nil
			packed, err := translator.Pack("hcm", hcm)
			if err != nil {
				t.Fatal(err)
			}
			f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: packed}
		}
	}
	return l
}

func checkPoolCluster(t *testing.T, c *clusterv3.Cluster, pool string, mode config.Destination) {
	t.Helper()
	if c == nil {
		t.Fatalf("no cluster for pool %s", pool)
	}
	switch mode {
	case config.DestinationOverrideHost:
		eds := c.GetEdsClusterConfig()
		cluster := eds.GetEdsConfig().GetApiConfigSource().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
		policy := c.GetLoadBalancingPolicy().GetPolicies()[0].GetTypedExtensionConfig().GetName()
		if c.GetType() != clusterv3.Cluster_EDS || cluster != "inflow-xds" || eds.GetServiceName() != translator.PoolClusterName(pool) ||
			policy != "envoy.load_balancing_policies.override_host" {
			t.Errorf("cluster %s: type %v, EDS from %q as %q, policy %q; want Inflow's EDS of %s with OverrideHost",
				c.GetName(), c.GetType(), cluster, eds.GetServiceName(), policy, translator.PoolClusterName(pool))
		}
	case config.DestinationOriginalDst:
		if c.GetType() != clusterv3.Cluster_ORIGINAL_DST || c.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED ||
			c.GetEdsClusterConfig() != nil || c.GetLoadBalancingPolicy() != nil {
			t.Errorf("cluster %s is not ORIGINAL_DST: %v", c.GetName(), c)
		}
	}
}

// checkBoundRoute: the route carries the pool binding for the filter, and
// retries on the picker's fallbacks (retries 0: none).
func checkBoundRoute(t *testing.T, r *routev3.Route, pool string, retries uint32) {
	t.Helper()
	per := &golangv3alpha.ConfigsPerRoute{}
	if err := r.GetTypedPerFilterConfig()[translator.FilterExtensionName].UnmarshalTo(per); err != nil {
		t.Fatalf("route %s has no Inflow binding: %v", r.GetName(), err)
	}
	rc, err := config.RouteFromAny(per.GetPluginsConfig()["inflow"].GetConfig())
	if err != nil || rc.Pool != pool {
		t.Errorf("route %s is bound to %+v (%v), want pool %s", r.GetName(), rc, err, pool)
	}
	if got := r.GetRoute().GetRetryPolicy().GetNumRetries().GetValue(); got != retries {
		t.Errorf("route %s retries %d times, want %d", r.GetName(), got, retries)
	}
}

func routesByName(rc *routev3.RouteConfiguration) map[string]*routev3.Route {
	out := map[string]*routev3.Route{}
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			out[r.GetName()] = r
		}
	}
	return out
}
