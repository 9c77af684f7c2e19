package kube_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/controlplane/kube"
	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/controlplane/local"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/filter/config"
)

// await bounds waits for things not being measured: a loaded machine makes
// a test slow, not flaky.
const await = 20 * time.Second

// fixture is one namespace of a shared API server, with clients.
type fixture struct {
	*kubetest.Namespace
	t *testing.T
}

func newFixture(t *testing.T, c *kubetest.Cluster, ns string) *fixture {
	t.Helper()
	return &fixture{Namespace: c.Namespace(t, ns), t: t}
}

// controlPlane starts inflow-controlplane in Kubernetes mode (in process,
// the packages the binary runs) with config extra appended to a file that
// watches f's namespace, and an ADS client that follows it as Envoy does.
type controlPlane struct {
	*local.Server
	envoy *xdstest.Envoy
	f     *fixture
}

func (f *fixture) controlPlane(extra string, election *kube.Election) *controlPlane {
	f.t.Helper()
	path := filepath.Join(f.t.TempDir(), "controlplane.yaml")
	cfg := "listeners: [{name: public, address: 127.0.0.1, port: 10000}]\nkubernetes:\n  namespaces: [" + f.Name + "]\n" + extra
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		f.t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := local.StartKubernetes(f.Ctx, path, log, &local.Kubernetes{Rest: f.Rest, Election: election})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			f.t.Errorf("control plane: %v", err)
		}
	})
	envoy, err := xdstest.Connect(srv.Addr, "envoy-"+f.Name)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = envoy.Close() })
	return &controlPlane{Server: srv, envoy: envoy, f: f}
}

// filterConfig is the filter config the listener carries, as the filter
// parses it: the spec as Envoy receives it.
func filterConfig(s *xdstest.State) (*config.Config, bool) {
	l, ok := s.Listeners["public"]
	if !ok {
		return nil, false
	}
	g, err := translator.GolangFilter(l, s.Extensions)
	if err != nil {
		return nil, false
	}
	c, err := config.FromAny(g.GetPluginConfig())
	if err != nil {
		return nil, false
	}
	return c, true
}

// await follows the ADS stream until the served filter config satisfies
// cond, failing with what it last saw.
func (cp *controlPlane) await(what string, cond func(*config.Config) bool) *config.Config {
	cp.f.t.Helper()
	var last *config.Config
	err := cp.envoy.Await(await, func(s *xdstest.State) bool {
		c, ok := filterConfig(s)
		if ok {
			last = c
		}
		return ok && cond(c)
	})
	if err != nil {
		cp.f.t.Fatalf("%s: %v; last filter config: %+v", what, err, last)
	}
	return last
}

func poolOf(c *config.Config, name string) *config.Pool {
	for i := range c.Pools {
		if c.Pools[i].Name == name {
			return &c.Pools[i]
		}
	}
	return nil
}

func modelOf(c *config.Config, name string) *config.Model {
	for i := range c.Models {
		if c.Models[i].Name == name {
			return &c.Models[i]
		}
	}
	return nil
}

// endpointsAre: the pool exists and has exactly these endpoints.
func endpointsAre(pool string, want ...string) func(*config.Config) bool {
	slices.Sort(want)
	return func(c *config.Config) bool {
		p := poolOf(c, pool)
		return p != nil && slices.Equal(p.Endpoints, want)
	}
}

// simulators starts one vLLM simulator per loopback address, all on one
// port, returning it.
func simulators(t *testing.T, model string, ips ...string) int32 {
	return kubetest.Simulators(t, model, ips...)
}

func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

func ep(ip string, port int32) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }
