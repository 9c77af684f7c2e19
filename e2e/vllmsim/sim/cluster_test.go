package sim

import (
	"net"
	"net/http"
	"strconv"
	"testing"
)

func TestStartClusterEphemeral(t *testing.T) {
	c, err := StartCluster(t.Context(), 3, fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := map[string]bool{}
	for _, a := range c.Addrs() {
		if seen[a] {
			t.Errorf("address %s used twice", a)
		}
		seen[a] = true
		if status, _ := do(t, http.MethodGet, "http://"+a+"/health", ""); status != 200 {
			t.Errorf("%s /health = %d", a, status)
		}
	}
	if len(seen) != 3 {
		t.Errorf("%d servers, want 3", len(seen))
	}
}

func TestStartClusterConsecutivePorts(t *testing.T) {
	// Another process may take a port between probing and binding: retry a few bases.
	for attempt := range 5 {
		base := freePort(t)
		o := fastOptions()
		o.Listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(base))
		c, err := StartCluster(t.Context(), 3, o)
		if err != nil {
			t.Logf("attempt %d at port %d: %v", attempt, base, err)
			continue
		}
		defer c.Close()
		for i, a := range c.Addrs() {
			if want := net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i)); a != want {
				t.Errorf("server %d at %s, want %s", i, a, want)
			}
		}
		return
	}
	t.Fatal("could not find three free consecutive ports")
}

func TestStartClusterCleansUpOnError(t *testing.T) {
	o := fastOptions()
	o.Listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	bad := fastOptions()
	bad.Model = "" // invalid: the second server fails after the first started
	c, err := StartEach(t.Context(), []Options{o, bad})
	if err == nil {
		c.Close()
		t.Fatal("StartEach accepted a server without a model")
	}
	// The first server must have been closed: its port is free again.
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		t.Fatalf("first server still holds %s: %v", o.Listen, err)
	}
	ln.Close()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
