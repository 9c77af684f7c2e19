package scheduler

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
)

// testPool retains a pool of n endpoints without scraping; the test sets
// metrics itself.
func testPool(t *testing.T, n int, cfg *config.Scheduler) (*Scheduler, []*pool.Endpoint) {
	t.Helper()
	m := pool.NewManager()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.0.0.%d:8000", i+1)
	}
	r := cfg.Resolve()
	opts := ScrapeOptions(r)
	opts.Disabled = true
	lease := m.Retain("gpu", addrs, opts, r.LRUCapacity)
	t.Cleanup(func() { lease.Release(); m.Close() })
	return New(lease, r), lease.Pool().Endpoints
}

func setMetrics(eps []*pool.Endpoint, ms ...pool.Metrics) {
	now := time.Now()
	for i, m := range ms {
		m.ScrapedAt = now
		eps[i].SetMetrics(&m)
	}
}

func prompt(s string) [][]byte { return [][]byte{[]byte(s)} }

func TestPickNoEndpoints(t *testing.T) {
	s, _ := testPool(t, 0, nil)
	var out Result
	if err := s.Pick(&Input{Model: "m"}, &out); !errors.Is(err, ErrNoEndpoints) || len(out.Endpoints) != 0 {
		t.Errorf("err %v endpoints %d, want ErrNoEndpoints", err, len(out.Endpoints))
	}
}

func TestPickFailOpen(t *testing.T) {
	s, eps := testPool(t, 3, nil)
	eps[0].Acquire()
	eps[2].Acquire()
	// Metrics exist but are older than the staleness threshold.
	old := pool.Metrics{ScrapedAt: time.Now().Add(-time.Hour)}
	eps[1].SetMetrics(&old)
	var out Result
	if err := s.Pick(&Input{Model: "m"}, &out); err != nil {
		t.Fatal(err)
	}
	if !out.FailOpen || out.Endpoints[0] != eps[1] || len(out.Endpoints) != 3 {
		t.Errorf("got fail-open %v, %v; want least in flight (%s) first, 3 endpoints", out.FailOpen, out.Endpoints, eps[1].Addr)
	}
	if got := s.Stats(time.Now()); got.FailOpens != 1 || got.StaleEndpoints != 3 {
		t.Errorf("stats %+v", got)
	}
}

func TestPickSaturation(t *testing.T) {
	s, eps := testPool(t, 2, nil)
	setMetrics(eps, pool.Metrics{Waiting: 20}, pool.Metrics{KVCacheUsage: 0.95})
	var out Result
	if err := s.Pick(&Input{Model: "m", Priority: -1}, &out); !errors.Is(err, ErrSaturated) {
		t.Fatalf("sheddable request in a saturated pool: %v, want ErrSaturated", err)
	}
	if err := s.Pick(&Input{Model: "m", Priority: 0}, &out); err != nil || !out.Saturated || len(out.Endpoints) != 2 {
		t.Fatalf("critical request: err %v, saturated %v, %d endpoints", err, out.Saturated, len(out.Endpoints))
	}
	if got := s.Stats(time.Now()); got.Sheds != 1 {
		t.Errorf("sheds = %d, want 1", got.Sheds)
	}
	// Once one endpoint has room, only it is picked, and nothing is shed.
	setMetrics(eps, pool.Metrics{Waiting: 20}, pool.Metrics{Waiting: 1})
	if err := s.Pick(&Input{Model: "m", Priority: -1}, &out); err != nil || out.Endpoints[0] != eps[1] || len(out.Endpoints) != 1 {
		t.Errorf("err %v endpoints %v, want %s alone", err, out.Endpoints, eps[1].Addr)
	}
}

func TestPickFallbacks(t *testing.T) {
	two := 2
	for _, tt := range []struct {
		fallbacks *int
		want      int
	}{{nil, 3}, {&two, 3}, {new(int), 1}} {
		s, eps := testPool(t, 5, &config.Scheduler{Fallbacks: tt.fallbacks})
		setMetrics(eps, pool.Metrics{Waiting: 4}, pool.Metrics{Waiting: 0}, pool.Metrics{Waiting: 2}, pool.Metrics{Waiting: 3}, pool.Metrics{Waiting: 1})
		out := Result{Endpoints: make([]*pool.Endpoint, 0, 4)}
		if err := s.Pick(&Input{Model: "m"}, &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Endpoints) != tt.want {
			t.Fatalf("%d endpoints, want %d", len(out.Endpoints), tt.want)
		}
		for i, want := range []int{1, 4, 2}[:tt.want] { // shortest queues first
			if out.Endpoints[i] != eps[want] {
				t.Errorf("endpoint %d = %s, want %s", i, out.Endpoints[i].Addr, eps[want].Addr)
			}
		}
	}
}

// TestPickSamePrefixSameEndpoint: the second request sharing a long prefix
// with the first goes where the first went, though every endpoint looks
// alike otherwise (so the first pick was a random tie-break).
func TestPickSamePrefixSameEndpoint(t *testing.T) {
	for range 20 {
		s, eps := testPool(t, 8, nil)
		ms := make([]pool.Metrics, 8)
		setMetrics(eps, ms...)
		system := `[{"role":"system","content":"` + fmt.Sprintf("%0800d", 7) + `"},`
		var first, second Result
		if err := s.Pick(&Input{Model: "m", Prompt: prompt(system + `{"role":"user","content":"hi"}]`)}, &first); err != nil {
			t.Fatal(err)
		}
		if err := s.Pick(&Input{Model: "m", Prompt: prompt(system + `{"role":"user","content":"another question"}]`)}, &second); err != nil {
			t.Fatal(err)
		}
		if second.Endpoints[0] != first.Endpoints[0] {
			t.Fatalf("second request went to %s, first to %s", second.Endpoints[0].Addr, first.Endpoints[0].Addr)
		}
		if second.PrefixBlocks < 12 || second.PromptBlocks < second.PrefixBlocks {
			t.Errorf("prefix blocks %d of %d, want the shared 12+", second.PrefixBlocks, second.PromptBlocks)
		}
		// Another model shares no cache with it.
		var other Result
		if err := s.Pick(&Input{Model: "other", Prompt: prompt(system + "]")}, &other); err != nil || other.PrefixBlocks != 0 {
			t.Errorf("other model: err %v, prefix blocks %d", err, other.PrefixBlocks)
		}
	}
}

func TestPickBlockSizeFromServer(t *testing.T) {
	s, eps := testPool(t, 1, nil)
	setMetrics(eps, pool.Metrics{BlockSize: 32}) // 32 tokens: 128-char blocks
	var out Result
	if err := s.Pick(&Input{Model: "m", Prompt: prompt(fmt.Sprintf("%01000d", 1))}, &out); err != nil {
		t.Fatal(err)
	}
	if out.PromptBlocks != 1000/128 {
		t.Errorf("%d blocks, want %d", out.PromptBlocks, 1000/128)
	}
}

func TestPickSessionAffinity(t *testing.T) {
	s, eps := testPool(t, 6, &config.Scheduler{SessionHeader: "X-Session-ID"})
	setMetrics(eps, make([]pool.Metrics, 6)...)
	if h := s.SessionHeader(); h != "x-session-id" {
		t.Errorf("SessionHeader() = %q, want the lower-case header name", h)
	}
	var out Result
	for k := range 10 {
		key := fmt.Sprintf("user-%d", k)
		if err := s.Pick(&Input{Model: "m", SessionKey: key}, &out); err != nil {
			t.Fatal(err)
		}
		first := out.Endpoints[0]
		first.Acquire() // load elsewhere must not outweigh the session
		for range 5 {
			if err := s.Pick(&Input{Model: "m", SessionKey: key}, &out); err != nil {
				t.Fatal(err)
			}
			if out.Endpoints[0] != first {
				t.Fatalf("session %s moved from %s to %s", key, first.Addr, out.Endpoints[0].Addr)
			}
		}
		first.Release()
	}
}

func TestPickLoRAAffinity(t *testing.T) {
	s, eps := testPool(t, 3, nil)
	setMetrics(eps,
		pool.Metrics{HasLoRA: true, RunningLoRA: []string{"a", "b"}, MaxLoRA: 2},
		pool.Metrics{HasLoRA: true, RunningLoRA: []string{"sql"}, MaxLoRA: 2, Waiting: 1},
		pool.Metrics{HasLoRA: true, MaxLoRA: 2, Waiting: 1},
	)
	var out Result
	if err := s.Pick(&Input{Model: "sql"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Endpoints[0] != eps[1] || len(out.Endpoints) != 2 {
		t.Errorf("picked %v, want %s (adapter loaded) then %s (room), full endpoint filtered", out.Endpoints, eps[1].Addr, eps[2].Addr)
	}
	if eps[1].Picks() != 1 {
		t.Errorf("picks counter %d", eps[1].Picks())
	}
}

// TestOpenSurvivesConfigUpdate parses two configs naming the same pool, as
// Envoy applies an update: the new one opens before the old one closes.
func TestOpenSurvivesConfigUpdate(t *testing.T) {
	parse := func(endpoints string) *config.Config {
		c, err := config.Parse([]byte(`{"models":[{"name":"m","pool":"gpu"}],"pools":[{"name":"gpu","endpoints":[` + endpoints + `],` +
			`"scheduler":{"scrape_interval":"1h","staleness":"2h"}}]}`))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	m := pool.NewManager()
	defer m.Close()
	old := Open(m, parse(`"127.0.0.1:1","127.0.0.1:2"`))
	s := old.Scheduler("gpu")
	eps := s.Pool().Endpoints
	setMetrics(eps, pool.Metrics{}, pool.Metrics{})
	var first Result
	in := &Input{Model: "m", Prompt: prompt(fmt.Sprintf("%0640d", 3))}
	if err := s.Pick(in, &first); err != nil {
		t.Fatal(err)
	}
	first.Endpoints[0].Acquire()

	next := Open(m, parse(`"127.0.0.1:2","127.0.0.1:1","127.0.0.1:3"`))
	old.Release()
	ns := next.Scheduler("gpu")
	if got := ns.Pool().Endpoints[1]; got != eps[0] || got.Metrics() == nil {
		t.Fatal("endpoint state lost across the update")
	}
	if first.Endpoints[0].InFlight() != 1 {
		t.Error("in-flight count lost across the update")
	}
	var again Result
	if err := ns.Pick(in, &again); err != nil {
		t.Fatal(err)
	}
	if again.Endpoints[0] != first.Endpoints[0] || again.PrefixBlocks != 10 {
		t.Errorf("after the update the prompt went to %s with %d cached blocks; want %s with 10",
			again.Endpoints[0].Addr, again.PrefixBlocks, first.Endpoints[0].Addr)
	}
	if next.Scheduler("nope") != nil {
		t.Error("unknown pool must give nil")
	}
	next.Release()
}

func TestPickDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	s, eps := testPool(t, 16, &config.Scheduler{SessionHeader: "x-session"})
	setMetrics(eps, make([]pool.Metrics, 16)...)
	in := &Input{Model: "m", SessionKey: "abc", Prompt: prompt(fmt.Sprintf("%04096d", 1))}
	out := Result{Endpoints: make([]*pool.Endpoint, 0, 4)}
	_ = s.Pick(in, &out) // grow the pooled buffers
	if n := testing.AllocsPerRun(200, func() { _ = s.Pick(in, &out) }); n > 0 {
		t.Errorf("%v allocations per pick", n)
	}
}
