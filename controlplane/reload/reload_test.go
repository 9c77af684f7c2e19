package reload_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/reload"
	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// pushBudget is the promise: a valid edit reaches Envoy within 1 s.
const pushBudget = time.Second

// await is the generous deadline for anything not being measured, so a
// loaded machine makes the test slow rather than flaky.
const await = 10 * time.Second

func configYAML(models string, endpoints string) string {
	return `
listeners: [{name: public, address: 127.0.0.1, port: 10000}]
models: [` + models + `]
pools: [{name: vllm, endpoints: [` + endpoints + `]}]
`
}

// replace writes the file the way editors and kubectl do: a new file
// renamed over the old one.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type harness struct {
	path    string
	srv     *xds.Server
	metrics *admin.Metrics
	addr    string
	r       *reload.Reloader
}

// start serves path over ADS on a loopback port and watches it.
func start(t *testing.T, initial string) *harness {
	t.Helper()
	h := &harness{path: filepath.Join(t.TempDir(), "inflow.yaml"), metrics: &admin.Metrics{}}
	replace(t, h.path, initial)
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	h.srv = xds.New(ctx, log, h.metrics)
	h.r = &reload.Reloader{Path: h.path, Publisher: h.srv, Metrics: h.metrics, Log: log}
	if err := h.r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	served, watched := make(chan error, 1), make(chan error, 1)
	go func() { served <- h.srv.Serve(ctx, lis) }()
	go func() { watched <- h.r.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		for _, c := range []chan error{served, watched} {
			if err := <-c; err != nil {
				t.Error(err)
			}
		}
	})
	// Watch reloads once after its watches are in place: from then on no
	// edit can be missed.
	poll.Eventually(t, "the watcher to start", func() bool { return h.metrics.Reloads(admin.ReloadUnchanged) >= 1 })
	return h
}

func connect(t *testing.T, addr string) *xdstest.Envoy {
	t.Helper()
	e, err := xdstest.Connect(addr, "envoy-"+strings.ReplaceAll(t.Name(), "/", "-"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

func TestEditIsPushedAndBadEditIsRefused(t *testing.T) {
	h := start(t, configYAML(`{name: m1, pool: vllm}`, `"10.0.0.1:8000"`))
	e := connect(t, h.addr)

	// Subscribe like Envoy: CDS and LDS, then RDS and ECDS for the
	// listener's route and filter, EDS for the pool.
	if err := e.Await(await, xdstest.AllAt("1")); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.State.Clusters[translator.PoolClusterName("vllm")]; !ok {
		t.Fatalf("clusters %v", e.State.Clusters)
	}
	if _, ok := e.State.Routes["public"]; !ok {
		t.Fatalf("routes %v", e.State.Routes)
	}
	listenerV1 := e.State.Listeners["public"]

	// A valid edit: a new model and endpoint, pushed within the budget.
	t0 := time.Now()
	replace(t, h.path, configYAML(`{name: m1, pool: vllm}, {name: m2, pool: vllm}`, `"10.0.0.1:8000", "10.0.0.2:8000"`))
	if err := e.Await(await, xdstest.AllAt("2")); err != nil {
		t.Fatal(err)
	}
	latency := time.Since(t0)
	t.Logf("edit -> LDS+ECDS+RDS+CDS+EDS version 2 received and ACKed in %v", latency)
	if latency > pushBudget {
		t.Errorf("push took %v, budget %v", latency, pushBudget)
	}
	fc := pluginConfig(t, e)
	if len(fc.Models) != 2 || len(fc.Pools[0].Endpoints) != 2 {
		t.Errorf("filter config after edit: %+v", fc)
	}
	if n := len(e.State.Routes["public"].GetVirtualHosts()[0].GetRoutes()); n != 2 {
		t.Errorf("%d routes, want one per model", n)
	}
	// The models and endpoints reached Envoy over ECDS, RDS and EDS: the
	// listener it received again is the same, so nothing drains.
	if !proto.Equal(e.State.Listeners["public"], listenerV1) {
		t.Error("the edit changed the listener: Envoy would drain its connections")
	}

	// A bad edit (undefined pool) is refused and counted; nothing is sent.
	replace(t, h.path, configYAML(`{name: m1, pool: nope}`, `"10.0.0.1:8000"`))
	poll.Eventually(t, "the bad edit to be rejected", func() bool { return h.metrics.Reloads(admin.ReloadRejected) == 1 })
	if r := e.Pending(); r != nil {
		t.Fatalf("bad edit produced a response: %s version %s", r.GetTypeUrl(), r.GetVersionInfo())
	}
	if v := h.srv.Version(); v != 2 {
		t.Fatalf("served version %d after a bad edit, want 2", v)
	}

	// The next good edit is version 3: the bad one never became a version.
	replace(t, h.path, configYAML(`{name: m3, pool: vllm}`, `"10.0.0.3:8000"`))
	if err := e.Await(await, xdstest.AllAt("3")); err != nil {
		t.Fatal(err)
	}
	if fc := pluginConfig(t, e); fc.Models[0].Name != "m3" {
		t.Errorf("models after recovery: %+v", fc.Models)
	}
}

func TestCommentOnlyEditKeepsTheVersion(t *testing.T) {
	base := configYAML(`{name: m1, pool: vllm}`, `"10.0.0.1:8000"`)
	h := start(t, base)
	before := h.metrics.Reloads(admin.ReloadUnchanged)
	replace(t, h.path, "# a comment changes the file, not the resources\n"+base)
	poll.Eventually(t, "the edit to be read", func() bool { return h.metrics.Reloads(admin.ReloadUnchanged) > before })
	if v := h.srv.Version(); v != 1 {
		t.Errorf("version %d, want 1: identical resources must not be re-pushed", v)
	}
}

func TestInvalidStartIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inflow.yaml")
	replace(t, path, "listeners: []\n")
	m := &admin.Metrics{}
	srv := xds.New(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), m)
	r := &reload.Reloader{Path: path, Publisher: srv, Metrics: m, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	err := r.Reload(context.Background())
	if !errors.Is(err, spec.ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
	if srv.Version() != 0 || m.Reloads(admin.ReloadRejected) != 1 {
		t.Errorf("version %d, rejected %d", srv.Version(), m.Reloads(admin.ReloadRejected))
	}
}

// pluginConfig parses the public listener's plugin_config with the
// filter's own parser, as Envoy's filter would.
func pluginConfig(t *testing.T, e *xdstest.Envoy) *config.Config {
	t.Helper()
	g, err := translator.GolangFilter(e.State.Listeners["public"], e.State.Extensions)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := config.FromAny(g.GetPluginConfig())
	if err != nil {
		t.Fatalf("the filter rejects the delivered config: %v", err)
	}
	return fc
}
