package kubetest

import (
	"net"
	"strconv"
	"testing"

	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
)

// Simulators starts one vLLM simulator serving model per loopback address,
// all on one free port (an InferencePool's target port is the same for
// every pod), and returns the port; they stop when the test ends.
func Simulators(t testing.TB, model string, ips ...string) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	for _, ip := range ips {
		s, err := sim.Start(t.Context(), sim.Options{Model: model, Listen: net.JoinHostPort(ip, strconv.Itoa(port))})
		if err != nil {
			t.Fatalf("simulator on %s: %v", ip, err)
		}
		t.Cleanup(func() { _ = s.Close() })
	}
	return int32(port)
}
