package e2e

import (
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
)

// requireOrSkip skips a test whose built peer is missing, unless make test
// (which builds it) said it may not be skipped.
func requireOrSkip(t *testing.T, err error, env string) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv(env) == "1" {
		t.Fatalf("%v [%s=1: this test may not be skipped]", err, env)
	}
	t.Skip(err)
}

// startGIEEPP runs the Inference Extension's EPP against a real
// kube-apiserver holding an InferencePool of n vLLM simulators, each
// listening on its own loopback address (the pods' status.podIP).
func startGIEEPP(t *testing.T, n int) (*harness.GIEEPP, *sim.Cluster) {
	t.Helper()
	_, err := harness.GIEEPPBinary()
	requireOrSkip(t, err, harness.RequireEPPEnv)
	kube := kubetest.Start(t) // skips without the assets, unless make test

	ips := harness.LoopbackIPs(n)
	port, err := harness.FreeCommonPort(ips)
	if err != nil {
		t.Fatal(err)
	}
	opts := make([]sim.Options, n)
	for i, ip := range ips {
		opts[i] = sim.Options{Model: "llama", Listen: net.JoinHostPort(ip, strconv.Itoa(port)),
			TTFTBase: time.Millisecond, PrefillPerToken: time.Microsecond, ITL: time.Microsecond}
	}
	sims, err := sim.StartEach(testContext(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sims.Close() })
	pool := harness.PoolPods{Namespace: "inference", Name: "llama", Port: port, IPs: ips}
	if err := harness.CreatePool(testContext(t), kube.Config, pool); err != nil {
		t.Fatal(err)
	}
	epp, err := harness.StartGIEEPP(testContext(t), t.TempDir(), kube.KubeConfig(), pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		epp.Close()
		if t.Failed() {
			t.Logf("EPP log:\n%s", epp.Stderr())
		}
	})
	return epp, sims
}

// TestGIEEPPThroughTheHost: the real Endpoint Picker, reading its pool
// from the API server and scraping the simulators, routes requests
// through the host's ext_proc client in its own mode (full-duplex
// streamed bodies). The simulators' counts prove the picks reached them.
func TestGIEEPPThroughTheHost(t *testing.T) {
	epp, sims := startGIEEPP(t, 2)
	h := startHost(t, harness.ExtProcHost(epp.Target, harness.FullDuplex))
	c := client(h)
	const n = 6
	for range n {
		if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hello")); err != nil {
			t.Fatalf("through the EPP: %v", err)
		}
	}
	var served uint64
	for _, s := range sims.Servers {
		served += s.Stats().Finished["stop"] + s.Stats().Finished["length"]
	}
	if served != n {
		t.Errorf("the simulators finished %d requests, want %d", served, n)
	}
	if v := stat(t, h, "ext_proc.streams_started"); v != n {
		t.Errorf("ext_proc.streams_started = %d, want %d", v, n)
	}
}
