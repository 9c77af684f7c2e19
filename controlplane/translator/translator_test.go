package translator_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
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

func TestEveryResourceValidatesAndSnapshotIsConsistent(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "in", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			res := translate(t, in)
			for typ, list := range res.ByType() {
				for _, r := range list {
					if err := r.(interface{ Validate() error }).Validate(); err != nil {
						t.Errorf("%s: %v", typ, err)
					}
				}
			}
			snap, err := cachev3.NewSnapshot("1", res.ByType())
			if err != nil {
				t.Fatal(err)
			}
			if err := snap.Consistent(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Same input, same bytes: Envoy treats a byte-different listener as a new
// one and drains connections, so map order inside Anys must not vary.
func TestTranslateIsDeterministic(t *testing.T) {
	marshal := func(res *translator.Resources) [][]byte {
		var out [][]byte
		for _, typ := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType} {
			for _, r := range res.ByType()[typ] {
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, b)
			}
		}
		return out
	}
	want := marshal(translate(t, fullInput))
	for i := range 20 {
		got := marshal(translate(t, fullInput))
		for j := range want {
			if !bytes.Equal(got[j], want[j]) {
				t.Fatalf("translation %d: resource %d differs", i, j)
			}
		}
	}
}

// The filter must accept, with its own parser, exactly the plugin_config
// each listener carries, and it must equal the config the file describes.
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
		g, err := translator.GolangFilter(l)
		if err != nil {
			t.Fatal(err)
		}
		if g.GetPluginName() != protocol.PluginName || g.GetLibraryPath() != "/opt/inflow/inflow.so" {
			t.Errorf("listener %s: plugin %q library %q", l.GetName(), g.GetPluginName(), g.GetLibraryPath())
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

// The API key must reach Envoy in the backend's route and nowhere else,
// and must not appear in printed output.
func TestAPIKeyOnlyInItsRoute(t *testing.T) {
	res := translate(t, fullInput)
	const key = "sk-test-golden-0123456789"
	var inRoutes int
	for _, rc := range res.Routes {
		for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
			for _, h := range r.GetRequestHeadersToAdd() {
				if h.GetHeader().GetValue() == "Bearer "+key {
					inRoutes++
					if r.GetName() != "model/gpt-4o-mini" {
						t.Errorf("key on route %s", r.GetName())
					}
				}
			}
		}
	}
	if inRoutes != len(res.Routes) {
		t.Errorf("key found on %d routes, want one per listener (%d)", inRoutes, len(res.Routes))
	}
	for _, l := range res.Listeners {
		if b, err := protojson.Marshal(l); err != nil || bytes.Contains(b, []byte(key)) {
			t.Errorf("listener %s carries the key (or failed to marshal: %v)", l.GetName(), err)
		}
	}
	for _, c := range res.Clusters {
		if b, err := protojson.Marshal(c); err != nil || bytes.Contains(b, []byte(key)) {
			t.Errorf("cluster %s carries the key (or failed to marshal: %v)", c.GetName(), err)
		}
	}
	var printed bytes.Buffer
	if err := translator.WriteYAML(&printed, res); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(printed.String(), key) || strings.Contains(printed.String(), "azure-test-key-42") {
		t.Error("printed YAML contains an API key")
	}
	// Redacting for print must not touch what Envoy gets.
	if got := res.Routes[0].GetVirtualHosts()[0].GetRoutes()[2].GetRequestHeadersToAdd()[0].GetHeader().GetValue(); got != "Bearer "+key {
		t.Errorf("WriteYAML redacted the served resources: %q", got)
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

func TestPoolClusterFollowsTheEndpointPickerProtocol(t *testing.T) {
	res := translate(t, fullInput)
	var pool *clusterv3.Cluster
	for _, c := range res.Clusters {
		if c.GetName() == translator.PoolClusterName("llama") {
			pool = c
		}
	}
	if pool == nil {
		t.Fatal("no cluster for pool llama")
	}
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
}

func TestTranslateValidatesItsInput(t *testing.T) {
	_, err := translator.Translate(&spec.Config{})
	if !errors.Is(err, spec.ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
}
