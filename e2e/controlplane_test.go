package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/reload"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/e2e/harness"
)

// xdsAwait bounds waiting for the control plane; generous so a loaded
// machine makes the test slow, not flaky.
const xdsAwait = 10 * time.Second

// controlPlaneYAML serves model "llama" (rewritten to llama-3-8b, as
// checkRouted expects) from a pool of one endpoint.
func controlPlaneYAML(endpoint string) string {
	return fmt.Sprintf(`
listeners: [{name: public, address: 127.0.0.1, port: 10000}]
models:
  - name: llama
    pool: p1
    rewrite: [{model: llama-3-8b}]
pools: [{name: p1, endpoints: [%q]}]
`, endpoint)
}

// startControlPlane serves the config file over ADS on a loopback port, as
// inflow-controlplane does, and returns its address.
func startControlPlane(t *testing.T, path string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := &admin.Metrics{}
	srv := xds.New(ctx, log, m)
	r := &reload.Reloader{Path: path, Getenv: os.LookupEnv, Publisher: srv, Metrics: m, Log: log}
	if err := r.Reload(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	served, watched := make(chan error, 1), make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	go func() { watched <- r.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		for _, c := range []chan error{served, watched} {
			if err := <-c; err != nil {
				t.Error(err)
			}
		}
	})
	return lis.Addr().String()
}

// pluginConfigFromLDS returns the golang filter of the "public" listener as
// Envoy received it, and its plugin_config in the JSON form Envoy's YAML
// would carry, which is what envoyhost reads.
func pluginConfigFromLDS(t *testing.T, e *xdstest.Envoy) (pluginName string, raw []byte) {
	t.Helper()
	g, err := translator.GolangFilter(e.State.Listeners["public"])
	if err != nil {
		t.Fatal(err)
	}
	raw, err = protojson.MarshalOptions{UseProtoNames: true}.Marshal(g.GetPluginConfig())
	if err != nil {
		t.Fatal(err)
	}
	return g.GetPluginName(), raw
}

// TestControlPlaneConfigRoutesThroughFilter: the plugin config the control
// plane delivers over LDS, fed unchanged to the real inflow.so in the ABI
// host, routes a request to the endpoint the config names; after a config
// edit, the new LDS config routes to the new endpoint.
func TestControlPlaneConfigRoutesThroughFilter(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "cp-b1"), startBackend(t, "cp-b2")
	path := filepath.Join(t.TempDir(), "inflow.yaml")
	if err := os.WriteFile(path, []byte(controlPlaneYAML(b1.Addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := xdstest.Connect(startControlPlane(t, path), "e2e-envoy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})

	steps := []struct {
		version string
		edit    string // new config, written before waiting for version
		want    *harness.Backend
	}{
		{"1", "", b1},
		{"2", controlPlaneYAML(b2.Addr), b2},
	}
	for _, s := range steps {
		t.Run("version "+s.version, func(t *testing.T) {
			if s.edit != "" {
				tmp := path + ".tmp"
				if err := os.WriteFile(tmp, []byte(s.edit), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, path); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.Await(xdsAwait, xdstest.AllAt(s.version)); err != nil {
				t.Fatal(err)
			}
			name, raw := pluginConfigFromLDS(t, e)
			if name != harness.InflowPlugin {
				t.Fatalf("LDS names plugin %q, want %q", name, harness.InflowPlugin)
			}
			h := startHost(t, harness.HostOptions{PluginName: name, RawConfig: raw})
			id := "cp-v" + s.version
			c := client(h)
			resp, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi"), option.WithHeader(testIDHeader, id))
			if err != nil {
				t.Fatalf("chat: %v", err)
			}
			b, r := received(t, id, b1, b2)
			if b != s.want {
				t.Fatalf("request reached %s, the config names %s", b.Name, s.want.Name)
			}
			checkRouted(t, b, r)
			if got := resp.Choices[0].Message.Content; got != "hello from "+b.Name {
				t.Errorf("content %q", got)
			}
			if !inflowRan(t, h) {
				t.Error("inflow_requests_total is absent or 0: the filter did not run")
			}
		})
	}
}
