package split

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func refs(r *Registry, specs ...Ref) []Ref {
	for i := range specs {
		specs[i].Health = r.Retain(specs[i].Backend)
	}
	return specs
}

// shares picks n times and returns each backend's share.
func shares(s *Split, now time.Time, n int) map[string]float64 {
	rng := rand.New(rand.NewPCG(1, 2))
	got := map[string]float64{}
	for range n {
		got[s.Pick(now, rng.Uint64()).Backend] += 1 / float64(n)
	}
	return got
}

func TestPickSplitsByWeight(t *testing.T) {
	r := NewRegistry()
	s := New(refs(r, Ref{Backend: "a", Weight: 3}, Ref{Backend: "b", Weight: 1}, Ref{Backend: "zero", Weight: 0}))
	got := shares(s, time.Now(), 40000)
	for b, want := range map[string]float64{"a": 0.75, "b": 0.25, "zero": 0} {
		if math.Abs(got[b]-want) > 0.01 {
			t.Errorf("share of %s = %.3f, want %.2f", b, got[b], want)
		}
	}
}

func TestPickUsesLowerPrioritiesOnlyWhileHigherAreEjected(t *testing.T) {
	r := NewRegistry()
	s := New(refs(r, Ref{Backend: "fallback", Weight: 1, Priority: 1}, Ref{Backend: "a", Weight: 1}, Ref{Backend: "b", Weight: 1}))
	now := time.Now()
	if got := shares(s, now, 1000); got["fallback"] != 0 || got["a"] == 0 || got["b"] == 0 {
		t.Fatalf("all healthy: shares %v, want a and b only", got)
	}
	eject(t, r.Retain("a"), now)
	if got := shares(s, now, 1000); got["b"] < 0.999 {
		t.Fatalf("a ejected: shares %v, want all to b (same priority)", got)
	}
	eject(t, r.Retain("b"), now)
	if got := shares(s, now, 1000); got["fallback"] < 0.999 {
		t.Fatalf("priority 0 ejected: shares %v, want all to the fallback", got)
	}
	eject(t, r.Retain("fallback"), now)
	if got := shares(s, now, 1000); got["fallback"] != 0 || got["a"] == 0 || got["b"] == 0 {
		t.Fatalf("every backend ejected: shares %v, want priority 0 as if none were", got)
	}
	if got := shares(s, now.Add(BaseEjectionTime), 1000); got["fallback"] != 0 || got["a"] == 0 {
		t.Fatalf("after the ejection time: shares %v, want priority 0 back", got)
	}
}

func eject(t *testing.T, h *Health, now time.Time) {
	t.Helper()
	for i := range Consecutive5xx {
		if ejected := h.Observe(503, now); ejected != (i == Consecutive5xx-1) {
			t.Fatalf("5xx %d of %d: ejected = %v", i+1, Consecutive5xx, ejected)
		}
	}
	if !h.Ejected(now) {
		t.Fatal("not ejected after consecutive 5xx")
	}
}

func TestHealthFollowsOutlierDetection(t *testing.T) {
	now := time.Now()
	h := &Health{}
	for range Consecutive5xx - 1 {
		h.Observe(500, now)
	}
	h.Observe(200, now) // a success breaks the run
	for range Consecutive5xx - 1 {
		h.Observe(502, now)
	}
	if h.Ejected(now) {
		t.Fatal("ejected without consecutive 5xx")
	}
	h.Observe(429, now) // a 4xx is not an upstream failure, and breaks the run too
	eject(t, h, now)
	if h.Ejected(now.Add(BaseEjectionTime)) {
		t.Fatal("still ejected after base_ejection_time")
	}
	// Ejected again before serving well: twice as long.
	later := now.Add(BaseEjectionTime)
	eject(t, h, later)
	if !h.Ejected(later.Add(2*BaseEjectionTime-time.Millisecond)) || h.Ejected(later.Add(2*BaseEjectionTime)) {
		t.Fatal("a second ejection lasts 2 x base_ejection_time")
	}
	// 5xx of requests in flight when it was ejected do not extend it.
	for range 2 * Consecutive5xx {
		if h.Observe(500, later) {
			t.Fatal("re-ejected while ejected")
		}
	}
	// Serving well again resets the multiplier.
	back := later.Add(2 * BaseEjectionTime)
	h.Observe(200, back)
	eject(t, h, back)
	if h.Ejected(back.Add(BaseEjectionTime)) {
		t.Fatal("the multiplier did not reset after a success")
	}
	for range 20 {
		h.ejections.Add(1)
	}
	eject(t, h, back.Add(BaseEjectionTime))
	if !h.Ejected(back.Add(BaseEjectionTime+MaxEjectionTime-time.Millisecond)) || h.Ejected(back.Add(BaseEjectionTime+MaxEjectionTime)) {
		t.Fatal("an ejection is capped at max_ejection_time")
	}
}

func TestRegistrySharesHealthAcrossConfigs(t *testing.T) {
	r := NewRegistry()
	old := r.Retain("a")
	next := r.Retain("a") // the next config, created before the old is released
	if old != next {
		t.Fatal("two configs naming one backend got different health")
	}
	eject(t, old, time.Now())
	r.Release("a")
	if !r.Retain("a").Ejected(time.Now()) {
		t.Fatal("the ejection was lost when the old config went")
	}
	r.Release("a")
	r.Release("a")
	if r.Retain("a").Ejected(time.Now()) {
		t.Fatal("a backend no config held was kept")
	}
}

func TestNewDropsWeightlessRefs(t *testing.T) {
	if New([]Ref{{Backend: "a"}}) != nil {
		t.Fatal("a split with no weight")
	}
}

func BenchmarkPick(b *testing.B) {
	r := NewRegistry()
	s := New(refs(r, Ref{Backend: "a", Weight: 3}, Ref{Backend: "b", Weight: 1}, Ref{Backend: "c", Weight: 1, Priority: 1}))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		s.Pick(now, rand.Uint64())
	}
}
