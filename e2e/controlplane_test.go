package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/controlplane/local"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/protocol"
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
	cp, err := local.Start(context.Background(), path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Close(); err != nil {
			t.Error(err)
		}
	})
	return cp.Addr
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
			lf, err := harness.FromListener(e.State.Listeners["public"], e.State.Extensions)
			if err != nil {
				t.Fatal(err)
			}
			if lf.Plugin != protocol.PluginName {
				t.Fatalf("LDS names plugin %q, want %q", lf.Plugin, protocol.PluginName)
			}
			h := startHost(t, harness.HostOptions{PluginName: lf.Plugin, RawConfig: lf.Config})
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
				t.Errorf("%s is absent or 0: the filter did not run", protocol.StatRequests)
			}
		})
	}
}
