package scheduler

import (
	"testing"

	"github.com/inflow-gateway/inflow/filter/pool"
)

func addrs(cs []Candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Endpoint.Addr
	}
	return out
}

func TestSaturationFilter(t *testing.T) {
	f := &SaturationFilter{QueueDepth: 5, KVCacheUsage: 0.8}
	tests := []struct {
		name      string
		ms        []pool.Metrics
		keep      []int
		saturated bool
	}{
		{"some free", []pool.Metrics{{Waiting: 6}, {Waiting: 5, KVCacheUsage: 0.8}, {KVCacheUsage: 0.9}}, []int{1}, false},
		{"all free", []pool.Metrics{{}, {Waiting: 1}}, []int{0, 1}, false},
		{"all busy", []pool.Metrics{{Waiting: 9}, {KVCacheUsage: 0.95}}, []int{0, 1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := cands(tt.ms...)
			all := addrs(cs)
			c := &Cycle{}
			got := addrs(f.Filter(c, cs))
			var want []string
			for _, i := range tt.keep {
				want = append(want, all[i])
			}
			if len(got) != len(want) || c.Saturated != tt.saturated {
				t.Fatalf("kept %v saturated %v, want %v %v", got, c.Saturated, want, tt.saturated)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("kept %v, want %v", got, want)
				}
			}
		})
	}
}

func TestLoRAFilter(t *testing.T) {
	running := pool.Metrics{HasLoRA: true, RunningLoRA: []string{"sql"}, MaxLoRA: 1}
	room := pool.Metrics{HasLoRA: true, MaxLoRA: 2}
	full := pool.Metrics{HasLoRA: true, RunningLoRA: []string{"a", "b"}, MaxLoRA: 2}
	noLoRA := pool.Metrics{}
	tests := []struct {
		name    string
		ms      []pool.Metrics
		adapter bool
		keep    int
	}{
		{"adapter: running or room", []pool.Metrics{running, room, full, noLoRA}, true, 2},
		{"adapter: nowhere fits, keep all", []pool.Metrics{full, noLoRA}, true, 2},
		{"base model passes", []pool.Metrics{full, noLoRA}, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Cycle{Input: &Input{Model: "sql"}, Adapter: tt.adapter}
			if got := (LoRAFilter{}).Filter(c, cands(tt.ms...)); len(got) != tt.keep {
				t.Errorf("kept %v, want %d", addrs(got), tt.keep)
			}
		})
	}
}

func TestMaxScorePicker(t *testing.T) {
	cs := cands(make([]pool.Metrics, 4)...)
	tests := []struct {
		name   string
		scores []float64
		n      int
		want   []int
	}{
		{"order", []float64{0.1, 0.9, 0.5, 0.7}, 3, []int{1, 3, 2}},
		{"n beyond candidates", []float64{0.2, 0.1, 0.4, 0.3}, 9, []int{2, 3, 0, 1}},
		{"primary only", []float64{1, 2, 3, 4}, 1, []int{3}},
		{"negative scores (fail-open)", []float64{-3, -1, -2, -5}, 2, []int{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := addrs(cs)
			got := (MaxScorePicker{}).Pick(cs, append([]float64{}, tt.scores...), tt.n, nil)
			if len(got) != len(tt.want) {
				t.Fatalf("picked %d, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				if got[i] != cs[w].Endpoint {
					t.Errorf("pick %d = %s, want %s", i, got[i].Addr, cs[w].Endpoint.Addr)
				}
			}
			if after := addrs(cs); after[0] != before[0] || after[3] != before[3] {
				t.Error("the picker reordered the candidates")
			}
		})
	}
	t.Run("ties break at random", func(t *testing.T) {
		seen := map[*pool.Endpoint]int{}
		for range 400 {
			got := (MaxScorePicker{}).Pick(cs, []float64{1, 0.5, 1, 1}, 1, nil)
			seen[got[0]]++
		}
		// Each tied endpoint expects ~133; failing needs < 40 (p ~ 1e-20).
		if seen[cs[1].Endpoint] != 0 || seen[cs[0].Endpoint] < 40 || seen[cs[2].Endpoint] < 40 || seen[cs[3].Endpoint] < 40 {
			t.Errorf("tie distribution %v", seen)
		}
	})
}
