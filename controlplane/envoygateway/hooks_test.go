package envoygateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	extension "github.com/envoyproxy/gateway/proto/extension"
	"google.golang.org/protobuf/proto"

	"github.com/inflow-gateway/inflow/controlplane/configfile"
	"github.com/inflow-gateway/inflow/controlplane/envoygateway"
	"github.com/inflow-gateway/inflow/internal/egjson"
	"github.com/inflow-gateway/inflow/internal/golden"
)

// testdata/in holds the calls the real Envoy Gateway made in
// e2e/envoygateway_xds_test.go (which fails when it now sends anything
// else); testdata/out what the hooks answer, given testdata/spec.yaml.

func newServer(t testing.TB) *envoygateway.Server {
	t.Helper()
	loaded, err := configfile.Load(filepath.Join("testdata", "spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := envoygateway.New(loaded.Config, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// call runs the hook a captured request is for.
func call(s *envoygateway.Server, req proto.Message) (proto.Message, error) {
	ctx := context.Background()
	switch r := req.(type) {
	case *extension.PostRouteModifyRequest:
		return s.PostRouteModify(ctx, r)
	case *extension.PostClusterModifyRequest:
		return s.PostClusterModify(ctx, r)
	case *extension.PostHTTPListenerModifyRequest:
		return s.PostHTTPListenerModify(ctx, r)
	case *extension.PostTranslateModifyRequest:
		return s.PostTranslateModify(ctx, r)
	}
	return nil, fmt.Errorf("no hook for %T", req)
}

type captured struct {
	name string
	req  proto.Message
}

// inputs are the captured calls, read fresh (hooks modify their input).
func inputs(t testing.TB) []captured {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "in", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no captured inputs in testdata/in (run the Envoy Gateway e2e test with UPDATE_GOLDEN=1)")
	}
	var out []captured
	for _, f := range files {
		hook, _, _ := strings.Cut(filepath.Base(f), "-")
		req, err := egjson.NewRequest(hook)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := egjson.Unmarshal(data, req); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, captured{name: filepath.Base(f), req: req})
	}
	return out
}

// TestHookGoldens answers every captured call and compares the answers
// with testdata/out (make update-goldens rewrites them).
func TestHookGoldens(t *testing.T) {
	s := newServer(t)
	outDir := filepath.Join("testdata", "out")
	produced := map[string]bool{}
	for _, in := range inputs(t) {
		out := filepath.Join(outDir, in.name)
		produced[out] = true
		t.Run(strings.TrimSuffix(in.name, ".json"), func(t *testing.T) {
			resp, err := call(s, in.req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := egjson.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, out, b)
		})
	}
	golden.Orphans(t, outDir, produced)
}
