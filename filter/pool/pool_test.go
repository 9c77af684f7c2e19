package pool

import "testing"

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
