package pool

import "testing"

func TestRegistryKeepsEndpointsAcrossUpdates(t *testing.T) {
	reg := NewRegistry()
	p1 := reg.Pool("gpu", []string{"10.0.0.1:1", "10.0.0.2:1"})
	p1.Endpoints[0].Acquire()
	p2 := reg.Pool("gpu", []string{"10.0.0.2:1", "10.0.0.1:1", "10.0.0.3:1"})
	if p2.Endpoints[1] != p1.Endpoints[0] || p2.Endpoints[1].InFlight() != 1 {
		t.Fatal("an endpoint kept by the new config must keep its state")
	}
	if other := reg.Pool("cpu", []string{"10.0.0.1:1"}); other.Endpoints[0] == p1.Endpoints[0] {
		t.Fatal("pools must not share endpoints")
	}
	reg.Pool("gpu", []string{"10.0.0.2:1"})
	if p4 := reg.Pool("gpu", []string{"10.0.0.1:1"}); p4.Endpoints[0].InFlight() != 0 {
		t.Fatal("a removed endpoint re-added later starts fresh")
	}
}

func TestLeastInFlight(t *testing.T) {
	if LeastInFlight(nil) != nil {
		t.Fatal("empty pool must yield nil")
	}
	eps := []*Endpoint{{Addr: "a"}, {Addr: "b"}, {Addr: "c"}}
	eps[0].Acquire()
	eps[0].Acquire()
	eps[2].Acquire()
	if got := LeastInFlight(eps); got != eps[1] {
		t.Fatalf("picked %s", got.Addr)
	}
	eps[1].Acquire()
	seen := map[string]int{}
	for range 300 {
		seen[LeastInFlight(eps).Addr]++
	}
	// b and c tie at 1; both must be picked, a never.
	if seen["a"] != 0 || seen["b"] < 60 || seen["c"] < 60 {
		t.Fatalf("tie-break distribution %v", seen)
	}
}
