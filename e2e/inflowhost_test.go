package e2e

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/inflow-gateway/inflow/e2e/harness"
)

// The Inflow e2e tests run the way users do: a control-plane config file
// served by the real control plane (controlplane/local) over ADS to an
// xDS-driven host running inflow.so with the routes, clusters and filter
// config it generates.

// cpConfig is a control-plane config: one listener "public" plus the
// filter's models, pools and limits in filterCfg (as inflowConfig builds).
func cpConfig(filterCfg map[string]any) map[string]any {
	out := map[string]any{"listeners": []any{map[string]any{"name": "public", "address": "127.0.0.1", "port": 10000}}}
	for k, v := range filterCfg {
		out[k] = v
	}
	return out
}

// startInflow serves cfg (a cpConfig) from a control plane and returns a
// host driven by it. The config file is at the returned path, for edits.
func startInflow(t *testing.T, cfg map[string]any, opts harness.XDSHostOptions) (*harness.Host, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "inflow.yaml")
	writeConfig(t, path, cfg)
	return startXDSHost(t, startControlPlane(t, path), opts), path
}

// writeConfig writes cfg as the control plane's YAML (JSON is YAML).
func writeConfig(t *testing.T, path string, cfg map[string]any) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(b))
}

// startInflowHost is startInflow for a filter config (as inflowConfig builds).
func startInflowHost(t *testing.T, filterCfg map[string]any) *harness.Host {
	t.Helper()
	h, _ := startInflow(t, cpConfig(filterCfg), harness.XDSHostOptions{})
	return h
}
