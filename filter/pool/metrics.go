package pool

import (
	"slices"
	"time"

	"github.com/inflow-gateway/inflow/filter/config"
)

// Metrics is one scrape of a model server's /metrics, reduced to what the
// scheduler uses. It is immutable once published with SetMetrics.
type Metrics struct {
	// Waiting is the number of requests queued on the server, summed over
	// its series (a data-parallel server exports one per engine).
	Waiting float64
	// Running is the number of requests being decoded, summed likewise.
	Running float64
	// KVCacheUsage is the fraction of KV-cache blocks in use, 0..1,
	// averaged over the series.
	KVCacheUsage float64
	// HasLoRA says the server reported LoRA state; the fields below are
	// meaningless otherwise.
	HasLoRA bool
	// RunningLoRA and WaitingLoRA are the adapters with running and
	// waiting requests, from the newest LoRA info series.
	RunningLoRA []string
	WaitingLoRA []string
	// MaxLoRA is how many adapters the server can hold at once.
	MaxLoRA int
	// BlockSize is the KV-cache block size in tokens, 0 when not reported.
	BlockSize int
	// ScrapedAt is when the numbers were read (a scrape, or a load report
	// that updated them); staleness is measured from it.
	ScrapedAt time.Time
	// LastScrape is when the server's /metrics were last read, by this
	// replica or, with a relay, by another one; load reports do not move
	// it.
	LastScrape time.Time
}

// Fresh reports whether m is usable at now: scraped at most staleness ago.
// A nil m is never fresh.
func (m *Metrics) Fresh(now time.Time, staleness time.Duration) bool {
	return m != nil && now.Sub(m.ScrapedAt) <= staleness
}

// HasAdapter reports whether adapter has running or waiting requests on the
// server.
func (m *Metrics) HasAdapter(adapter string) (running, waiting bool) {
	return slices.Contains(m.RunningLoRA, adapter), slices.Contains(m.WaitingLoRA, adapter)
}

// MetricNames says which Prometheus series carry each signal. Each field
// lists alternatives: the first one present in a scrape wins, so one set
// covers servers before and after a rename.
type MetricNames struct {
	Waiting      []string
	Running      []string
	KVCacheUsage []string
	// LoRAInfo is a gauge whose labels carry the adapter state and whose
	// value is a timestamp (vLLM's vllm:lora_requests_info).
	LoRAInfo []string
	// CacheConfig carries the KV block size, in label BlockSizeLabel, or in
	// its value when BlockSizeLabel is empty.
	CacheConfig    []string
	BlockSizeLabel string
}

// Label names of vLLM's LoRA info gauge.
const (
	labelRunningLoRA = "running_lora_adapters"
	labelWaitingLoRA = "waiting_lora_adapters"
	labelMaxLoRA     = "max_lora"
)

// Built-in metric name sets, by server.
var (
	// VLLM names; vllm:gpu_cache_usage_perc is the name before v0.10.
	VLLM = MetricNames{
		Waiting:        []string{"vllm:num_requests_waiting"},
		Running:        []string{"vllm:num_requests_running"},
		KVCacheUsage:   []string{"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"},
		LoRAInfo:       []string{"vllm:lora_requests_info"},
		CacheConfig:    []string{"vllm:cache_config_info"},
		BlockSizeLabel: "block_size",
	}
	SGLang = MetricNames{
		Waiting:        []string{"sglang:num_queue_reqs"},
		Running:        []string{"sglang:num_running_reqs"},
		KVCacheUsage:   []string{"sglang:token_usage"},
		CacheConfig:    []string{"sglang:cache_config_info"},
		BlockSizeLabel: "page_size",
	}
	TRTLLM = MetricNames{
		Waiting:      []string{"trtllm_num_requests_waiting"},
		Running:      []string{"trtllm_num_requests_running"},
		KVCacheUsage: []string{"trtllm_kv_cache_utilization"},
		CacheConfig:  []string{"trtllm_kv_cache_tokens_per_block"},
	}
)

// MetricNamesFor returns the built-in set of a metrics format (one of
// config.BuiltinMetricsFormats); ok is false for any other name.
func MetricNamesFor(format string) (names MetricNames, ok bool) {
	switch format {
	case config.MetricsFormatVLLM:
		return VLLM, true
	case config.MetricsFormatSGLang:
		return SGLang, true
	case config.MetricsFormatTRTLLM:
		return TRTLLM, true
	}
	return MetricNames{}, false
}
