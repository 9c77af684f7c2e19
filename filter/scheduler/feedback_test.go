package scheduler

import (
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/filter/pool"
)

func TestCooldownFilter(t *testing.T) {
	now := time.Now()
	c := &Cycle{Now: now}
	cs := cands(pool.Metrics{}, pool.Metrics{}, pool.Metrics{})
	cs[1].Endpoint.Fail(now, time.Second, time.Second)
	kept := CooldownFilter{}.Filter(c, append([]Candidate(nil), cs...))
	if len(kept) != 2 || kept[0].Endpoint != cs[0].Endpoint || kept[1].Endpoint != cs[2].Endpoint {
		t.Fatalf("kept %v", kept)
	}
	cs[0].Endpoint.Fail(now, time.Second, time.Second)
	cs[2].Endpoint.Fail(now, time.Second, time.Second)
	if kept := (CooldownFilter{}).Filter(c, append([]Candidate(nil), cs...)); len(kept) != 3 {
		t.Fatalf("all cooling down: kept %d, want all 3", len(kept))
	}
	if kept := (CooldownFilter{}).Filter(&Cycle{Now: now.Add(time.Second)}, append([]Candidate(nil), cs...)); len(kept) != 3 {
		t.Fatalf("after the cooldown: kept %d", len(kept))
	}
}

func TestLatencyScorer(t *testing.T) {
	now := time.Now()
	half := 10 * time.Second
	tests := []struct {
		name string
		ttft []time.Duration // 0: no observation
		tpot []time.Duration
		age  []time.Duration
		want []float64
	}{
		{"none observed", []time.Duration{0, 0}, nil, nil, []float64{1, 1}},
		{"one slow", []time.Duration{100 * time.Millisecond, 600 * time.Millisecond, 100 * time.Millisecond}, nil, nil, []float64{1, 1.25 / 6, 1}},
		{"near the best scores like the best", []time.Duration{100 * time.Millisecond, 120 * time.Millisecond, 125 * time.Millisecond, 250 * time.Millisecond}, nil, nil, []float64{1, 1, 1, 0.5}},
		{"unobserved stays neutral", []time.Duration{200 * time.Millisecond, 0}, nil, nil, []float64{1, 1}},
		{"ttft and tpot averaged", []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}, []time.Duration{10 * time.Millisecond, 40 * time.Millisecond}, nil, []float64{1, (1 + 1.25*0.25) / 2}},
		{"age fades the penalty", []time.Duration{100 * time.Millisecond, 500 * time.Millisecond}, nil, []time.Duration{0, half}, []float64{1, 1 - 0.5*(1-0.25)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := cands(make([]pool.Metrics, len(tt.ttft))...)
			for i, d := range tt.ttft {
				if d == 0 {
					continue
				}
				var tpot time.Duration
				if tt.tpot != nil {
					tpot = tt.tpot[i]
				}
				var age time.Duration
				if tt.age != nil {
					age = tt.age[i]
				}
				cs[i].Endpoint.ObserveLatency(d, tpot, tpot > 0, now.Add(-age))
			}
			inDelta(t, tt.name, score(LatencyScorer{HalfLife: half}, &Cycle{Now: now}, cs), tt.want)
		})
	}
}

// An endpoint whose responses were slow loses picks although its queue
// looks like the others'; one that failed gets none while it cools down.
func TestPickUsesFeedback(t *testing.T) {
	s, eps := testPool(t, 3, nil)
	setMetrics(eps, pool.Metrics{}, pool.Metrics{}, pool.Metrics{})
	now := time.Now()
	for _, ep := range eps {
		ep.ObserveLatency(100*time.Millisecond, 0, false, now)
	}
	eps[1].ObserveLatency(5*time.Second, 0, false, now)
	eps[1].ObserveLatency(5*time.Second, 0, false, now)
	eps[2].Fail(now, time.Minute, time.Minute)
	for range 50 {
		var out Result
		if err := s.Pick(&Input{Model: "m"}, &out); err != nil {
			t.Fatal(err)
		}
		if out.Endpoints[0] != eps[0] {
			t.Fatalf("picked %s, want the fast endpoint that is not cooling down", out.Endpoints[0].Addr)
		}
	}
	// Fail-open (no fresh metrics) also passes over a cooling endpoint.
	for _, ep := range eps {
		ep.SetMetrics(nil)
	}
	eps[0].Fail(now, time.Minute, time.Minute)
	eps[1].Acquire()
	eps[1].Acquire()
	var out Result
	if err := s.Pick(&Input{Model: "m"}, &out); err != nil || !out.FailOpen || out.Endpoints[0] != eps[1] {
		t.Fatalf("fail-open picked %v (%v), want the only one not cooling down despite its load", out.Endpoints, err)
	}
}

func TestLatencyOutlierFilter(t *testing.T) {
	now := time.Now()
	half := 10 * time.Second
	ms := time.Millisecond
	tests := []struct {
		name      string
		ttft      []time.Duration // 0: not observed
		waiting   []float64       // nil: all 0
		age       time.Duration   // of the slowest one's observation
		saturated bool
		kept      int
	}{
		{"one slow endpoint", []time.Duration{100 * ms, 120 * ms, 110 * ms, 700 * ms}, nil, 0, false, 3},
		{"twice as slow but only by 15 ms", []time.Duration{10 * ms, 12 * ms, 25 * ms}, nil, 0, false, 3},
		{"slower by 150 ms but not twice", []time.Duration{400 * ms, 420 * ms, 560 * ms}, nil, 0, false, 3},
		{"an old observation fades", []time.Duration{100 * ms, 120 * ms, 110 * ms, 700 * ms}, nil, 3 * half, false, 4},
		{"unobserved endpoints stay", []time.Duration{100 * ms, 0, 110 * ms, 700 * ms}, nil, 0, false, 3},
		// Medians 400 ms and 4 waiting: a waiting request is worth 80 ms,
		// a 500 ms excess (twice the median) 6.25 of them.
		{"busy but not saturated: not worth it", []time.Duration{400 * ms, 400 * ms, 400 * ms, 900 * ms}, []float64{4, 4, 4, 0}, 0, false, 3},
		// Saturated: medians 1000 ms and 6 waiting, so a waiting request
		// is worth 1000/7 ms and a 500 ms excess 3.5 waiting requests.
		{"saturated, queues alike: not worth it", []time.Duration{1000 * ms, 1000 * ms, 1000 * ms, 1500 * ms}, []float64{6, 6, 6, 6}, 0, true, 3},
		{"saturated, not twice the median but still ejected", []time.Duration{1000 * ms, 1000 * ms, 1000 * ms, 1500 * ms}, []float64{6, 6, 6, 3}, 0, true, 3},
		{"saturated, its queue shorter by more than its excess", []time.Duration{1000 * ms, 1000 * ms, 1000 * ms, 1500 * ms}, []float64{6, 6, 6, 2}, 0, true, 4},
		{"saturated, a small excess is no outlier", []time.Duration{1000 * ms, 1000 * ms, 1000 * ms, 1080 * ms}, []float64{6, 6, 6, 6}, 0, true, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := make([]pool.Metrics, len(tt.ttft))
			for i := range ms {
				if tt.waiting != nil {
					ms[i].Waiting = tt.waiting[i]
				}
			}
			cs := cands(ms...)
			for i, d := range tt.ttft {
				if d == 0 {
					continue
				}
				at := now
				if i == len(tt.ttft)-1 {
					at = now.Add(-tt.age)
				}
				cs[i].Endpoint.ObserveLatency(d, 0, false, at)
			}
			c := &Cycle{Now: now, Saturated: tt.saturated}
			if got := len(LatencyOutlierFilter{HalfLife: half}.Filter(c, cs)); got != tt.kept {
				t.Errorf("kept %d, want %d", got, tt.kept)
			}
		})
	}
}

// With response durations observed, a waiting request costs the median
// duration over the median running count: here 1 s over 2, so a 500 ms
// excess is worth one waiting request, and the slow endpoint takes work
// once the others' queues are longer than its own by more than that, in a
// busy pool as in a saturated one.
func TestLatencyOutlierFilterWeighsQueuesByDuration(t *testing.T) {
	now := time.Now()
	ms := time.Millisecond
	tests := []struct {
		name      string
		ttft      []time.Duration
		waiting   []float64
		saturated bool
		kept      int
	}{
		{"busy: its queue shorter by more than one", []time.Duration{400 * ms, 400 * ms, 400 * ms, 900 * ms}, []float64{3, 3, 3, 1}, false, 4},
		{"busy: shorter by exactly one", []time.Duration{400 * ms, 400 * ms, 400 * ms, 900 * ms}, []float64{3, 3, 3, 2}, false, 3},
		{"idle pool: ejected", []time.Duration{400 * ms, 400 * ms, 400 * ms, 900 * ms}, []float64{0, 0, 0, 0}, false, 3},
		{"saturated: shorter by more than one", []time.Duration{1000 * ms, 1000 * ms, 1000 * ms, 1500 * ms}, []float64{6, 6, 6, 4}, true, 4},
		{"saturated: queues alike", []time.Duration{1000 * ms, 1000 * ms, 1000 * ms, 1500 * ms}, []float64{6, 6, 6, 6}, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := make([]pool.Metrics, len(tt.ttft))
			for i := range ms {
				ms[i].Waiting, ms[i].Running = tt.waiting[i], 2
			}
			cs := cands(ms...)
			for i, d := range tt.ttft {
				cs[i].Endpoint.ObserveTTFT(d, now)
				cs[i].Endpoint.ObserveDuration(time.Second, now)
			}
			c := &Cycle{Now: now, Saturated: tt.saturated}
			if got := len(LatencyOutlierFilter{HalfLife: 10 * time.Second}.Filter(c, cs)); got != tt.kept {
				t.Errorf("kept %d, want %d", got, tt.kept)
			}
		})
	}
}

// An endpoint the outlier filter kept for its short queue is not
// penalised for its TTFT a second time by the scorer.
func TestLatencyScorerSparesWhatTheFilterWeighed(t *testing.T) {
	now := time.Now()
	ms := make([]pool.Metrics, 4)
	for i := range ms {
		ms[i].Waiting, ms[i].Running = 6, 2
	}
	ms[3].Waiting = 2
	cs := cands(ms...)
	for i, d := range []time.Duration{time.Second, time.Second, time.Second, 1500 * time.Millisecond} {
		cs[i].Endpoint.ObserveTTFT(d, now)
		cs[i].Endpoint.ObserveDuration(time.Second, now)
	}
	c := &Cycle{Now: now, Saturated: true}
	kept := LatencyOutlierFilter{HalfLife: 10 * time.Second}.Filter(c, cs)
	if len(kept) != 4 {
		t.Fatalf("kept %d, want the slow endpoint with the short queue too", len(kept))
	}
	inDelta(t, "scores", score(LatencyScorer{HalfLife: 10 * time.Second}, c, kept), []float64{1, 1, 1, 1})
}
