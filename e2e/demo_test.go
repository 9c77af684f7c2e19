package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/e2e/demo"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
)

// demoTimeout bounds a demo start plus its smoke requests.
const demoTimeout = 90 * time.Second

func startDemo(t *testing.T) *demo.Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
	t.Cleanup(cancel)
	s, err := demo.Start(ctx, demo.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("start the demo: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("envoyhost log:\n%s", s.Host.Stderr())
		}
		if err := s.Close(); err != nil {
			t.Errorf("close the demo: %v", err)
		}
	})
	return s
}

// TestDemoSmoke runs `inflow-demo -smoke` in process: the compose demo's
// control-plane config (e2e/demo/controlplane.yaml), served over ADS,
// configures the real inflow.so, which routes the demo's requests to the
// three simulators. CI exercises the demo config end to end this way.
func TestDemoSmoke(t *testing.T) {
	t.Parallel()
	s := startDemo(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
	defer cancel()
	if err := demo.Smoke(ctx, s, &out); err != nil {
		t.Fatalf("smoke: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for _, l := range lines {
		if !strings.HasPrefix(l, "ok   ") {
			t.Errorf("not a passing check: %q", l)
		}
	}
	if len(lines) != 7 {
		t.Errorf("%d checks reported, want 7:\n%s", len(lines), out.String())
	}
}

// TestDemoSmokeFails: the smoke checks are not a formality; with every
// simulator failing inference they must report the failure.
func TestDemoSmokeFails(t *testing.T) {
	t.Parallel()
	s := startDemo(t)
	for _, srv := range s.Sims.Servers {
		if err := srv.SetFault(sim.Fault{Mode: sim.FaultFail}); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
	defer cancel()
	err := demo.Smoke(ctx, s, &out)
	if err == nil {
		t.Fatalf("smoke passed with failing model servers:\n%s", out.String())
	}
	for _, check := range []string{"FAIL chat completion of the base model", "FAIL streamed completion", "ok   GET /v1/models", "ok   unknown model"} {
		if !strings.Contains(out.String(), check) {
			t.Errorf("report lacks %q:\n%s", check, out.String())
		}
	}
}
