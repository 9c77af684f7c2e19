package scheduler

import (
	"fmt"
	"math"
	"testing"

	"github.com/inflow-gateway/inflow/filter/pool"
)

const delta = 1e-9

func inDelta(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d scores, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > delta {
			t.Errorf("%s: score[%d] = %v, want %v (all: %v)", what, i, got[i], want[i], got)
		}
	}
}

// cands builds candidates from metrics, one endpoint each.
func cands(ms ...pool.Metrics) []Candidate {
	out := make([]Candidate, len(ms))
	for i := range ms {
		out[i] = Candidate{Endpoint: &pool.Endpoint{Addr: fmt.Sprintf("10.0.0.%d:8000", i+1)}, Metrics: &ms[i], Index: i}
	}
	return out
}

func score(s Scorer, c *Cycle, cs []Candidate) []float64 {
	out := make([]float64, len(cs))
	for i := range out {
		out[i] = -1 // scorers must write every entry
	}
	s.Score(c, cs, out)
	return out
}

func TestQueueScorer(t *testing.T) {
	tests := []struct {
		name    string
		waiting []float64
		want    []float64
	}{
		{"spread", []float64{0, 5, 10}, []float64{1, 0.5, 0}},
		{"all equal", []float64{3, 3}, []float64{1, 1}},
		{"one", []float64{7}, []float64{1}},
		{"offset", []float64{4, 6}, []float64{1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := make([]pool.Metrics, len(tt.waiting))
			for i, w := range tt.waiting {
				ms[i].Waiting = w
			}
			inDelta(t, tt.name, score(QueueScorer{}, &Cycle{}, cands(ms...)), tt.want)
		})
	}
}

func TestKVCacheScorer(t *testing.T) {
	cs := cands(pool.Metrics{KVCacheUsage: 0}, pool.Metrics{KVCacheUsage: 0.25}, pool.Metrics{KVCacheUsage: 1}, pool.Metrics{KVCacheUsage: 1.5}, pool.Metrics{KVCacheUsage: -0.1})
	inDelta(t, "kv", score(KVCacheScorer{}, &Cycle{}, cs), []float64{1, 0.75, 0, 0, 1})
}

func TestInFlightScorer(t *testing.T) {
	tests := []struct {
		name     string
		inFlight []int
		want     []float64
	}{
		{"spread", []int{0, 2, 4}, []float64{1, 0.5, 0}},
		{"idle pool", []int{0, 0}, []float64{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := cands(make([]pool.Metrics, len(tt.inFlight))...)
			for i, n := range tt.inFlight {
				for range n {
					cs[i].Endpoint.Acquire()
				}
			}
			inDelta(t, tt.name, score(InFlightScorer{}, &Cycle{}, cs), tt.want)
		})
	}
}

func TestLoRAScorer(t *testing.T) {
	running := pool.Metrics{HasLoRA: true, RunningLoRA: []string{"sql"}, MaxLoRA: 1}
	room := pool.Metrics{HasLoRA: true, RunningLoRA: []string{"other"}, MaxLoRA: 2}
	waiting := pool.Metrics{HasLoRA: true, RunningLoRA: []string{"other"}, WaitingLoRA: []string{"sql"}, MaxLoRA: 2}
	full := pool.Metrics{HasLoRA: true, RunningLoRA: []string{"a", "b"}, MaxLoRA: 2}
	none := pool.Metrics{}
	cs := cands(running, room, waiting, full, none)
	tests := []struct {
		name    string
		model   string
		adapter bool
		want    []float64
	}{
		{"adapter", "sql", true, []float64{1, 0.8, 0.6, 0, 0}},
		{"base model", "llama", false, []float64{0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Cycle{Input: &Input{Model: tt.model}, Adapter: tt.adapter}
			inDelta(t, tt.name, score(LoRAScorer{}, c, cs), tt.want)
		})
	}
}

func TestSessionScorer(t *testing.T) {
	cs := cands(make([]pool.Metrics, 8)...)
	eps := make([]*pool.Endpoint, len(cs))
	for i := range cs {
		eps[i] = cs[i].Endpoint
	}
	s := NewSessionScorer(eps)
	winner := func(key string, cs []Candidate) string {
		out := score(s, &Cycle{Input: &Input{SessionKey: key}}, cs)
		w := ""
		for i, v := range out {
			switch v {
			case 1:
				if w != "" {
					t.Fatalf("two winners: %v", out)
				}
				w = cs[i].Endpoint.Addr
			case 0:
			default:
				t.Fatalf("score %v not 0 or 1", v)
			}
		}
		return w
	}
	if got := score(s, &Cycle{Input: &Input{}}, cs); got[0] != 0 || got[7] != 0 {
		t.Errorf("no session key: %v, want all 0", got)
	}
	spread := map[string]bool{}
	for k := range 64 {
		key := fmt.Sprintf("session-%d", k)
		w := winner(key, cs)
		if winner(key, cs) != w {
			t.Fatal("same key, different endpoint")
		}
		spread[w] = true
		// Filtering out a loser keeps the session where it is; filtering
		// out the winner moves it, to the same place every time.
		var without []Candidate
		for _, c := range cs {
			if c.Endpoint.Addr != w {
				without = append(without, c)
			}
		}
		if next := winner(key, without); next == w || next != winner(key, without) {
			t.Fatalf("session moved to %q after losing %q", next, w)
		}
		if w2 := winner(key, append([]Candidate{}, cs[:len(cs)-1]...)); w != cs[len(cs)-1].Endpoint.Addr && w2 != w {
			t.Fatal("removing another endpoint moved the session")
		}
	}
	if len(spread) < 4 {
		t.Errorf("64 sessions landed on only %d of 8 endpoints", len(spread))
	}
}
