package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

const testTimeout = 30 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// startHost starts envoyhost for the test and kills it on cleanup, dumping
// its log if the test failed.
func startHost(t *testing.T, opts harness.HostOptions) *harness.Host {
	t.Helper()
	h, err := harness.StartHost(testContext(t), t.TempDir(), opts)
	if err != nil {
		t.Fatalf("start envoyhost: %v", err)
	}
	t.Cleanup(func() {
		exited, err := h.Exited()
		h.Close()
		if exited {
			t.Errorf("envoyhost exited during the test: %v\n%s", err, h.Stderr())
		} else if t.Failed() {
			t.Logf("envoyhost log:\n%s", h.Stderr())
		}
	})
	return h
}

func startBackend(t *testing.T, name string) *harness.Backend {
	t.Helper()
	b, err := harness.StartBackend(name)
	if err != nil {
		t.Fatalf("start backend: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

func client(h *harness.Host, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(h.URL("/v1/")),
		option.WithAPIKey("test"),
		option.WithMaxRetries(0), // a retry would hide a failed request
	}, opts...)...)
}

// stat returns a counter from /stats, failing the test if it is absent.
func stat(t *testing.T, h *harness.Host, name string) int64 {
	t.Helper()
	s, err := h.Stats(testContext(t))
	if err != nil {
		t.Fatalf("read /stats: %v", err)
	}
	v, ok := s[name]
	if !ok {
		t.Fatalf("/stats has no %s", name)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("/stats %s = %q: %v", name, v, err)
	}
	return n
}

// statOr0 is stat for a counter the filter exports only once it is
// non-zero.
func statOr0(t *testing.T, h *harness.Host, name string) int64 {
	t.Helper()
	s, err := h.Stats(testContext(t))
	if err != nil {
		t.Fatalf("read /stats: %v", err)
	}
	n, _ := strconv.ParseInt(s[name], 10, 64)
	return n
}

// inflowRan reports whether the Inflow filter really processed requests:
// Envoy (and the host) silently run a pass-through filter for an unknown
// plugin name, so a 200 proves nothing. Inflow's parser defines its metrics
// through the config callbacks and counts every request it handles.
func inflowRan(t *testing.T, h *harness.Host) bool {
	t.Helper()
	s, err := h.Stats(testContext(t))
	if err != nil {
		t.Fatalf("read /stats: %v", err)
	}
	n, err := strconv.ParseInt(s[protocol.StatRequests], 10, 64)
	return err == nil && n > 0
}

// inflowConfig is a config with model "llama" (rewritten to llama-3-8b) on
// a pool of the given backends.
func inflowConfig(maxBody int, backends ...*harness.Backend) map[string]any {
	eps := make([]string, len(backends))
	for i, b := range backends {
		eps[i] = b.Addr
	}
	cfg := map[string]any{
		"models": []any{
			map[string]any{"name": "llama", "pool": "p1", "rewrite": []any{map[string]any{"model": "llama-3-8b", "weight": 1}}},
		},
		"pools": []any{map[string]any{"name": "p1", "endpoints": eps}},
	}
	if maxBody > 0 {
		cfg["limits"] = map[string]any{"max_request_body_bytes": maxBody}
	}
	return cfg
}
