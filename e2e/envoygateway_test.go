package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/inflow-gateway/inflow/controlplane/envoygateway"
	"github.com/inflow-gateway/inflow/controlplane/local"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/e2e/egrun"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/internal/egjson"
	"github.com/inflow-gateway/inflow/internal/golden"
)

// egGateway is the Gateway of testdata/envoygateway/resources.yaml, as
// Envoy Gateway keys its proxies (node.cluster).
const egGateway = "default/inflow"

// envoyGatewayBinary is the real envoy-gateway, or skips (fails under make
// test) when it has not been built.
func envoyGatewayBinary(t *testing.T) string {
	t.Helper()
	bin, err := egrun.Binary()
	if err != nil {
		if egrun.Required() {
			t.Fatalf("%v (make test builds it: make envoy-gateway)", err)
		}
		t.Skipf("%v", err)
	}
	return bin
}

// egResources is the test's Gateway, routes and pools, with a certificate
// made for this run as the TLS listener's Secret.
func egResources(t *testing.T) string {
	t.Helper()
	base := repoFile(t, "e2e/testdata/envoygateway/resources.yaml")
	pki, err := xdstest.NewPKI(t.TempDir(), "llm-ca")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := pki.Issue("llm.example.com", "llm.example.com")
	if err != nil {
		t.Fatal(err)
	}
	crt, err1 := os.ReadFile(pair.CertFile)
	key, err2 := os.ReadFile(pair.KeyFile)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	secret := fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: llm-tls, namespace: default}\ntype: kubernetes.io/tls\ndata: {tls.crt: %s, tls.key: %s}",
		base64.StdEncoding.EncodeToString(crt), base64.StdEncoding.EncodeToString(key))
	return egrun.Docs(string(base), secret)
}

// repoFile reads a file of the repository.
func repoFile(t *testing.T, rel string) []byte {
	t.Helper()
	root, err := harness.Root()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorder keeps every hook call Envoy Gateway makes, by testdata name.
type recorder struct {
	mu    sync.Mutex
	calls map[string]proto.Message
}

func (r *recorder) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if m, ok := req.(proto.Message); ok {
		hook := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
		r.mu.Lock()
		// Cloned before the hook modifies it in place.
		r.calls[egjson.FileName(hook, m)] = proto.Clone(m)
		r.mu.Unlock()
	}
	return h(ctx, req)
}

// startEnvoyGatewayMode runs Inflow's control plane in Envoy Gateway mode
// (xDS and the extension server, recording the hooks' inputs) with
// testdata's spec, its pools' endpoints replaced by endpoints.
func startEnvoyGatewayMode(t *testing.T, endpoints map[string][]string, extra ...string) (*local.Server, *recorder) {
	t.Helper()
	text := string(repoFile(t, "controlplane/envoygateway/testdata/spec.yaml"))
	for _, eps := range []struct{ from, to string }{
		{`["127.0.0.1:8001", "127.0.0.1:8002"]`, quoteList(endpoints["default.llama"])},
		{`["127.0.0.1:8003"]`, quoteList(endpoints["default.tiny"])},
	} {
		if endpoints != nil {
			text = strings.Replace(text, eps.from, eps.to, 1)
		}
	}
	text += strings.Join(extra, "")
	path := filepath.Join(t.TempDir(), "inflow.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{calls: map[string]proto.Message{}}
	logs := &harness.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cp, err := local.StartEnvoyGateway(context.Background(), path, log, nil, grpc.UnaryInterceptor(rec.intercept))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cp.Close()
		if t.Failed() {
			t.Logf("control plane log:\n%s", logs)
		}
	})
	return cp, rec
}

func quoteList(eps []string) string {
	q := make([]string, len(eps))
	for i, e := range eps {
		q[i] = `"` + e + `"`
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// startEnvoyGateway runs the real Envoy Gateway on resources, calling the
// extension server at ext ("" for none).
func startEnvoyGateway(t *testing.T, bin, resources, ext string) *egrun.EnvoyGateway {
	t.Helper()
	logs := &harness.SyncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	eg, err := egrun.Start(ctx, egrun.Options{Binary: bin, Dir: t.TempDir(), Resources: resources, Extension: ext, Hooks: envoygateway.Hooks, Log: logs})
	if err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	t.Cleanup(func() {
		_ = eg.Close()
		if t.Failed() {
			t.Logf("envoy-gateway log:\n%s", logs)
		}
	})
	return eg
}

// fetchServed reads what Envoy Gateway serves the Gateway's proxies once
// it has translated with wantHook's output in place.
func fetchServed(t *testing.T, eg *egrun.EnvoyGateway, ready func(*egrun.Served) bool) *egrun.Served {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		s, err := eg.Fetch(testContext(t), egGateway)
		if err != nil {
			t.Fatalf("Envoy Gateway's xDS: %v", err)
		}
		if ready(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("Envoy Gateway never served the expected resources; last: %d listeners, %d clusters", len(s.Listeners), len(s.Clusters))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// storeHookInputs keeps the inputs Envoy Gateway sent as the extension
// server's golden inputs: a plain run fails when Envoy Gateway now sends
// something else than the stored files (make update-goldens refreshes
// them, and the hook goldens with them).
func storeHookInputs(t *testing.T, rec *recorder) {
	t.Helper()
	root, err := harness.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "controlplane/envoygateway/testdata/in")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	names := make([]string, 0, len(rec.calls))
	for n := range rec.calls {
		names = append(names, n)
	}
	sort.Strings(names)
	produced := map[string]bool{}
	for _, n := range names {
		b, err := egjson.Marshal(rec.calls[n])
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, n)
		golden.Assert(t, p, b)
		produced[p] = true
	}
	golden.Orphans(t, dir, produced)
}
