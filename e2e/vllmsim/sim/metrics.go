package sim

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MetricsOverride replaces values /metrics reports, so a test can show a scheduler any
// load picture without producing it. Nil fields report the engine's real value.
type MetricsOverride struct {
	NumRequestsWaiting  *int      `json:"num_requests_waiting,omitempty"`
	NumRequestsRunning  *int      `json:"num_requests_running,omitempty"`
	KVCacheUsagePerc    *float64  `json:"kv_cache_usage_perc,omitempty"`
	RunningLoRAAdapters *[]string `json:"running_lora_adapters,omitempty"`
	WaitingLoRAAdapters *[]string `json:"waiting_lora_adapters,omitempty"`
	MaxLoRA             *int      `json:"max_lora,omitempty"`
}

// touchesLoRA reports whether o sets any vllm:lora_requests_info label.
func (o MetricsOverride) touchesLoRA() bool {
	return o.RunningLoRAAdapters != nil || o.WaitingLoRAAdapters != nil || o.MaxLoRA != nil
}

// maxLoRASeries bounds the stale vllm:lora_requests_info series kept (see loraSeries).
const maxLoRASeries = 16

// loraSeries is one label set of vllm:lora_requests_info. vLLM sets the gauge of the
// current label set to the current time on every engine step and never deletes old
// label sets, so a scrape shows several series and readers must take the newest one;
// the simulator reproduces that so scrapers are tested against it.
type loraSeries struct {
	running, waiting, maxLoRA string
	ts                        float64
}

// metricsRenderer writes the Prometheus text exposition of one server.
type metricsRenderer struct {
	opts Options

	mu       sync.Mutex
	override MetricsOverride
	lora     []loraSeries // oldest first
}

func (m *metricsRenderer) setOverride(o MetricsOverride) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.override = o
}

func (m *metricsRenderer) currentOverride() MetricsOverride {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.override
}

// gauges are the load gauges as /metrics (and the load report) show
// them: the engine's, unless overridden.
func (m *metricsRenderer) gauges(st engineState, ov MetricsOverride) (running, waiting, kvUsage float64) {
	running, waiting = float64(st.running), float64(st.waiting)
	kvUsage = float64(st.kvUsed) / float64(m.opts.KVBlocks)
	if ov.NumRequestsRunning != nil {
		running = float64(*ov.NumRequestsRunning)
	}
	if ov.NumRequestsWaiting != nil {
		waiting = float64(*ov.NumRequestsWaiting)
	}
	if ov.KVCacheUsagePerc != nil {
		kvUsage = *ov.KVCacheUsagePerc
	}
	return running, waiting, kvUsage
}

// render returns the text exposition (format 0.0.4) for st at time now.
func (m *metricsRenderer) render(st engineState, now time.Time) []byte {
	ov := m.currentOverride()
	running, waiting, kvUsage := m.gauges(st, ov)

	w := &promWriter{}
	base := []label{{"model_name", m.opts.Model}, {"engine", "0"}}
	w.family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.")
	w.sample("vllm:num_requests_running", base, running)
	w.family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.")
	w.sample("vllm:num_requests_waiting", base, waiting)
	w.family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.")
	w.sample("vllm:kv_cache_usage_perc", base, kvUsage)
	// The pre-0.10 name, exported alongside for scrapers configured with it.
	w.family("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage. DEPRECATED: Use vllm:kv_cache_usage_perc instead.")
	w.sample("vllm:gpu_cache_usage_perc", base, kvUsage)

	// prometheus_client exposes a Counter named X as X_total in the text format.
	w.family("vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in terms of number of queried tokens.")
	w.sample("vllm:prefix_cache_queries_total", base, float64(st.prefixQueries))
	w.family("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.")
	w.sample("vllm:prefix_cache_hits_total", base, float64(st.prefixHits))
	w.family("vllm:request_success_total", "counter", "Count of successfully processed requests.")
	for _, reason := range []string{finishStop, finishLength, finishAbort} {
		w.sample("vllm:request_success_total", append(base[:2:2], label{"finished_reason", reason}), float64(st.success[reason]))
	}

	w.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", base, st.ttft)
	w.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", base, st.e2e)

	// An info metric emulated with a gauge fixed at 1, every CacheConfig field a string
	// label (vLLM log_metrics_info); the fields scrapers read are block_size and
	// num_gpu_blocks.
	w.family("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig")
	w.sample("vllm:cache_config_info", []label{
		{"block_size", strconv.Itoa(m.opts.BlockSize)},
		{"cache_dtype", "auto"},
		{"enable_prefix_caching", "True"},
		{"engine", "0"},
		{"model_name", m.opts.Model},
		{"num_gpu_blocks", strconv.Itoa(m.opts.KVBlocks)},
	}, 1)

	if len(m.opts.LoRAs) > 0 || ov.touchesLoRA() {
		cur := loraSeries{
			running: strings.Join(st.runningLoRAs, ","),
			waiting: strings.Join(st.waitingLoRAs, ","),
			maxLoRA: strconv.Itoa(m.opts.MaxLoRAs),
		}
		if ov.RunningLoRAAdapters != nil {
			cur.running = strings.Join(*ov.RunningLoRAAdapters, ",")
		}
		if ov.WaitingLoRAAdapters != nil {
			cur.waiting = strings.Join(*ov.WaitingLoRAAdapters, ",")
		}
		if ov.MaxLoRA != nil {
			cur.maxLoRA = strconv.Itoa(*ov.MaxLoRA)
		}
		cur.ts = float64(now.UnixNano()) / 1e9
		w.family("vllm:lora_requests_info", "gauge", "Running stats on lora requests.")
		for _, s := range m.recordLoRA(cur) {
			w.sample("vllm:lora_requests_info", []label{
				{"max_lora", s.maxLoRA},
				{"model_name", m.opts.Model},
				{"running_lora_adapters", s.running},
				{"waiting_lora_adapters", s.waiting},
			}, s.ts)
		}
	}
	return w.buf.Bytes()
}

// recordLoRA stamps cur as the newest series and returns all kept series, oldest first.
func (m *metricsRenderer) recordLoRA(cur loraSeries) []loraSeries {
	m.mu.Lock()
	defer m.mu.Unlock()
	kept := m.lora[:0]
	for _, s := range m.lora {
		if s.running != cur.running || s.waiting != cur.waiting || s.maxLoRA != cur.maxLoRA {
			kept = append(kept, s)
		}
	}
	kept = append(kept, cur)
	if len(kept) > maxLoRASeries {
		kept = kept[len(kept)-maxLoRASeries:]
	}
	m.lora = kept
	return append([]loraSeries(nil), kept...)
}

type label struct{ name, value string }

// promWriter builds Prometheus text format 0.0.4.
type promWriter struct{ buf bytes.Buffer }

func (w *promWriter) family(name, typ, help string) {
	fmt.Fprintf(&w.buf, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (w *promWriter) sample(name string, labels []label, v float64) {
	w.buf.WriteString(name)
	if len(labels) > 0 {
		w.buf.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				w.buf.WriteByte(',')
			}
			w.buf.WriteString(l.name)
			w.buf.WriteString(`="`)
			w.buf.WriteString(labelEscaper.Replace(l.value))
			w.buf.WriteByte('"')
		}
		w.buf.WriteByte('}')
	}
	w.buf.WriteByte(' ')
	w.buf.WriteString(formatValue(v))
	w.buf.WriteByte('\n')
}

func (w *promWriter) histogram(name, help string, labels []label, h histogram) {
	w.family(name, "histogram", help)
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		w.sample(name+"_bucket", append(labels[:len(labels):len(labels)], label{"le", formatValue(b)}), float64(cum))
	}
	w.sample(name+"_bucket", append(labels[:len(labels):len(labels)], label{"le", "+Inf"}), float64(h.count))
	w.sample(name+"_count", labels, float64(h.count))
	w.sample(name+"_sum", labels, h.sum)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// formatValue prints floats the way Python's prometheus_client does for the common
// cases ("1.0", "0.25"), so diffs against a real vLLM scrape stay readable.
func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
