package hostxds

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inflow-gateway/inflow/controlplane/configfile"
	"github.com/inflow-gateway/inflow/controlplane/translator"
)

// The host runs what the control plane emits: every resource the
// translator produces for its own test inputs translates, except the one
// thing envoyhost does not do (downstream TLS), which is refused by name.
func TestEveryResourceTheControlPlaneEmitsTranslates(t *testing.T) {
	inputs, err := filepath.Glob("../../controlplane/translator/testdata/in/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no translator inputs: %v", err)
	}
	// the container paths the configs name, as volumes on this machine
	dir := t.TempDir()
	for _, f := range []string{"ca/azure.pem"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := mounts{"/etc/inflow": dir}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			loaded, err := configfile.Load(in)
			if err != nil {
				t.Fatal(err)
			}
			res, err := translator.Translate(loaded.Config)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range res.Listeners {
				_, _, err := translateListener(l)
				if l.GetFilterChains()[0].GetTransportSocket() != nil {
					if !errors.Is(err, ErrNotModelled) || !strings.Contains(err.Error(), "transport_socket") {
						t.Errorf("listener %s with downstream TLS: %v, want a refusal naming transport_socket", l.GetName(), err)
					}
					continue
				}
				if err != nil {
					t.Errorf("listener %s: %v", l.GetName(), err)
				}
			}
			for _, r := range res.Routes {
				if _, err := translateRouteConfig(r, []string{translator.FilterExtensionName}); err != nil {
					t.Errorf("routes %s: %v", r.GetName(), err)
				}
			}
			cla := map[string]int{}
			for i, e := range res.Endpoints {
				cla[e.GetClusterName()] = i
			}
			for _, c := range res.Clusters {
				var err error
				if i, ok := cla[c.GetName()]; ok {
					_, _, err = translateCluster(context.Background(), c, res.Endpoints[i], m)
				} else {
					_, _, err = translateCluster(context.Background(), c, nil, m)
				}
				if err != nil {
					t.Errorf("cluster %s: %v", c.GetName(), err)
				}
			}
			for _, e := range res.Extensions {
				if _, err := translateExtensionConfig(e); err != nil {
					t.Errorf("extension %s: %v", e.GetName(), err)
				}
			}
		})
	}
}
