package config

import (
	"strings"
	"testing"
	"time"
)

// withScheduler wraps a pool scheduler JSON object (and optional extra
// top-level fields) into a minimal config.
func withScheduler(sched, extra string) string {
	return `{"models":[{"name":"m","pool":"p"}],"pools":[{"name":"p","endpoints":["10.0.0.1:8000"],"scheduler":` + sched + `}]` + extra + `}`
}

func TestSchedulerValidation(t *testing.T) {
	tests := []struct{ name, js, want string }{
		{"negative weight", withScheduler(`{"weights":{"queue":-1}}`, ""), "pools[0].scheduler.weights.queue: must be >= 0"},
		{"unknown weight", withScheduler(`{"weights":{"speed":1}}`, ""), `unknown field "speed"`},
		{"bad format", withScheduler(`{"metrics_format":"tgi"}`, ""), "pools[0].scheduler.metrics_format: must be one of"},
		{"custom without names", withScheduler(`{"metrics_format":"custom","metric_names":{"waiting":"q"}}`, ""), "pools[0].scheduler.metric_names: metrics_format custom needs"},
		{"bad duration", withScheduler(`{"scrape_interval":"50"}`, ""), `pools[0].scheduler.scrape_interval: must be a positive duration like "50ms", got "50"`},
		{"negative duration", withScheduler(`{"scrape_timeout":"-1s"}`, ""), "pools[0].scheduler.scrape_timeout"},
		{"staleness under interval", withScheduler(`{"scrape_interval":"1s"}`, ""), "pools[0].scheduler.staleness: must be at least scrape_interval (1s)"},
		{"kv threshold", withScheduler(`{"saturation":{"kv_cache_usage":1.5}}`, ""), "pools[0].scheduler.saturation.kv_cache_usage: must be between 0 and 1"},
		{"queue threshold", withScheduler(`{"saturation":{"queue_depth":-2}}`, ""), "pools[0].scheduler.saturation.queue_depth"},
		{"fallbacks", withScheduler(`{"fallbacks":17}`, ""), "pools[0].scheduler.fallbacks: must be between 0 and 16"},
		{"session weight without header", withScheduler(`{"weights":{"session":1}}`, ""), "pools[0].scheduler.weights.session: needs session_header"},
		{"bad header", withScheduler(`{"session_header":"x session"}`, ""), "pools[0].scheduler.session_header"},
		{"block chars", withScheduler(`{"prefix_cache":{"block_chars":-1}}`, ""), "pools[0].scheduler.prefix_cache.block_chars"},
		{"max blocks", withScheduler(`{"prefix_cache":{"max_blocks":5000}}`, ""), "pools[0].scheduler.prefix_cache.max_blocks"},
		{"empty adapter", withScheduler(`{"lora":{"adapters":["a",""]}}`, ""), "pools[0].scheduler.lora.adapters[1]: must not be empty"},
		{"metrics path", withScheduler(`{"metrics_path":"metrics"}`, ""), "pools[0].scheduler.metrics_path"},
		{"empty objective", withScheduler(`{}`, `,"objectives":{"":1}`), "objectives: objective names must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.js))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSchedulerResolve(t *testing.T) {
	def := (*Scheduler)(nil).Resolve()
	if def.MetricsFormat != "vllm" || def.ScrapeInterval != 50*time.Millisecond || def.Staleness != 200*time.Millisecond ||
		def.QueueDepth != 5 || def.KVCacheUsage != 0.8 || def.Fallbacks != 2 || def.MaxBlocks != 256 || def.LRUCapacity != 31250 {
		t.Errorf("defaults %+v", def)
	}
	if w := def.Weights; w.Queue != 2 || w.KVCache != 2 || w.Prefix != 3 || w.Session != 0 {
		t.Errorf("default weights %+v: want the EPP's queue 2, kv 2, prefix 3, and no session scorer without a header", w)
	}

	c, err := Parse([]byte(withScheduler(`{
		"metrics_format": "sglang", "scrape_interval": "20ms", "staleness": "100ms",
		"weights": {"queue": 0, "prefix": 5}, "saturation": {"queue_depth": 8},
		"fallbacks": 0, "session_header": "X-Session-ID",
		"prefix_cache": {"block_chars": 32}, "lora": {"adapters": ["sql"]}
	}`, `,"objectives":{"batch":-1,"chat":10}`)))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Pools[0].Scheduler.Resolve()
	if r.MetricsFormat != "sglang" || r.ScrapeInterval != 20*time.Millisecond || r.Staleness != 100*time.Millisecond ||
		r.ScrapeTimeout != DefaultScrapeTimeout || r.Weights.Queue != 0 || r.Weights.Prefix != 5 || r.Weights.KVCache != 2 ||
		r.Weights.Session != 2 || r.QueueDepth != 8 || r.KVCacheUsage != 0.8 || r.Fallbacks != 0 ||
		r.SessionHeader != "x-session-id" || r.BlockChars != 32 || len(r.LoRAAdapters) != 1 {
		t.Errorf("resolved %+v", r)
	}
	for objective, want := range map[string]int{"batch": -1, "chat": 10, "unknown": 0, "": 0} {
		if got := c.PriorityFor(objective); got != want {
			t.Errorf("PriorityFor(%q) = %d, want %d", objective, got, want)
		}
	}
}

func TestSchedulerRoundTrip(t *testing.T) {
	c, err := Parse([]byte(withScheduler(`{"weights":{"queue":1.5},"staleness":"1s","fallbacks":1}`, `,"objectives":{"batch":-1}`)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ToAny(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromAny(a)
	if err != nil {
		t.Fatal(err)
	}
	s := back.Pools[0].Scheduler
	if *s.Weights.Queue != 1.5 || s.Staleness != "1s" || *s.Fallbacks != 1 || back.PriorityFor("batch") != -1 {
		t.Errorf("round trip lost settings: %+v", s)
	}
}

// TestPoolPriorityFor: a pool's own objectives win over the top-level ones,
// which still apply to objectives the pool does not name.
func TestPoolPriorityFor(t *testing.T) {
	global := &Config{Objectives: map[string]int{"batch": -1, "chat": 5}}
	p := &Pool{Name: "p", Objectives: map[string]int{"batch": 3, "bulk": -1}}
	for obj, want := range map[string]int{"batch": 3, "bulk": -1, "chat": 5, "": 0, "other": 0} {
		if got := p.PriorityFor(global, obj); got != want {
			t.Errorf("PriorityFor(%q) = %d, want %d", obj, got, want)
		}
	}
	if got := (&Pool{}).PriorityFor(global, "batch"); got != -1 {
		t.Errorf("a pool without objectives: %d, want the global -1", got)
	}
}

func TestEmptyModelListIsValid(t *testing.T) {
	if _, err := Parse([]byte(`{"models":[]}`)); err != nil {
		t.Fatalf("a config without models (every request 404) must parse: %v", err)
	}
	if _, err := Parse([]byte(`{"models":[],"pools":[{"name":"p","endpoints":[],"objectives":{" ":1}}]}`)); err == nil ||
		!strings.Contains(err.Error(), "pools[0].objectives") {
		t.Fatalf("an empty pool objective name must be refused naming its field, got %v", err)
	}
}
