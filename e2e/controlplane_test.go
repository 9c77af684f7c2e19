package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/controlplane/local"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/hostxds"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

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

// startXDSHost starts an envoyhost fed by the control plane at cp and waits
// for its listener "public".
func startXDSHost(t *testing.T, cp string, opts harness.XDSHostOptions) *harness.Host {
	t.Helper()
	opts.ControlPlane = cp
	switch opts.Listener {
	case "":
		opts.Listener = "public"
	case "-":
		opts.Listener = "" // the test waits itself
	}
	h, err := harness.StartXDSHost(testContext(t), opts)
	if err != nil {
		t.Fatalf("start envoyhost: %v", err)
	}
	t.Cleanup(func() {
		exited, err := h.Exited()
		h.Close()
		if exited {
			t.Errorf("envoyhost exited during the test: %v\n%s", err, h.Stderr())
		} else if t.Failed() {
			t.Logf("envoyhost log:\n%s\nxDS client: %+v", h.Stderr(), h.Agent().Status())
		}
	})
	return h
}

// writeFile replaces path atomically, as an editor or a ConfigMap swap does.
func writeFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestControlPlaneConfigRoutesThroughFilter: the host takes what the
// control plane serves over ADS (listener, routes, clusters, the filter's
// config) and routes through the real inflow.so; after a config edit the
// same host routes by the new config, without a restart.
func TestControlPlaneConfigRoutesThroughFilter(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "cp-b1"), startBackend(t, "cp-b2")
	path := filepath.Join(t.TempDir(), "inflow.yaml")
	writeFile(t, path, controlPlaneYAML(b1.Addr))
	h := startXDSHost(t, startControlPlane(t, path), harness.XDSHostOptions{})
	steps := []struct {
		edit    string // new config, written first
		version string // the control plane's snapshot version then
		want    *harness.Backend
	}{
		{"", "1", b1},
		{controlPlaneYAML(b2.Addr), "2", b2},
	}
	for i, s := range steps {
		t.Run(fmt.Sprint("step ", i), func(t *testing.T) {
			if s.edit != "" {
				writeFile(t, path, s.edit)
			}
			if err := h.Agent().Await(testContext(t), hostxds.AllAt(s.version)); err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprint("cp-", i)
			// a new connection: an LDS update drains the old ones, which
			// keep the old filter chain until they close (as in Envoy)
			c := client(h, option.WithHTTPClient(&http.Client{Transport: &http.Transport{}}))
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
	if st := h.Agent().Status(); st.NACKs != 0 {
		t.Errorf("the host refused the control plane's config: %s", st.LastNACK)
	}
}
