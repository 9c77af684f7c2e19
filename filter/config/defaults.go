package config

import "time"

// Every default and limit of the filter config lives in this file: the
// schema's documentation, the filter's runtime (filter/pool, filter/scheduler)
// and the control plane all read them from here.

// Request limits.
const (
	// DefaultMaxRequestBodyBytes bounds a buffered request body when the
	// config does not say otherwise. 8 MiB fits long-context prompts with
	// images as URLs.
	DefaultMaxRequestBodyBytes int64 = 8 << 20
	// MaxRequestBodyBytesCeiling stops a typo from letting one request pin a
	// gigabyte of Envoy memory.
	MaxRequestBodyBytesCeiling int64 = 256 << 20
)

// Scraping, the EPP's defaults: scrape every 50 ms and distrust numbers
// older than 200 ms, i.e. after about three missed scrapes.
const (
	DefaultScrapeInterval = 50 * time.Millisecond
	DefaultScrapeTimeout  = 100 * time.Millisecond
	DefaultStaleness      = 200 * time.Millisecond
	// DefaultMetricsPath is where vLLM, SGLang and trtllm-serve serve metrics.
	DefaultMetricsPath = "/metrics"
)

// Metrics formats: the model-server metric sets the runtime knows by name
// (filter/pool maps each to its Prometheus series), plus custom.
const (
	MetricsFormatVLLM   = "vllm"
	MetricsFormatSGLang = "sglang"
	MetricsFormatTRTLLM = "trtllm"
	// MetricsFormatCustom takes every series name from metric_names.
	MetricsFormatCustom = "custom"

	DefaultMetricsFormat = MetricsFormatVLLM
)

// BuiltinMetricsFormats are the formats with a built-in metric set, in the
// order messages list them.
var BuiltinMetricsFormats = []string{MetricsFormatVLLM, MetricsFormatSGLang, MetricsFormatTRTLLM}

// Picking.
const (
	DefaultFallbacks    = 2
	MaxFallbacks        = 16
	DefaultQueueDepth   = 5
	DefaultKVCacheUsage = 0.8
)

// MaxBackendRefs bounds a model's backend_refs: Envoy AI Gateway's limit
// on a rule's backendRefs.
const MaxBackendRefs = 128

// DefaultDestination is the destination mode of a pool that names none:
// OverrideHost is the only mode whose retries use the fallback list, and
// it failed fewer requests when a pod died (make bench-faults,
// docs/benchmarks.md).
const DefaultDestination = DestinationOverrideHost

// DefaultWeights: queue, KV and prefix are the EPP's default profile
// (2, 2, 3). LoRA affinity only separates endpoints for adapter requests.
// In-flight counts what this Envoy sent since the last scrape, which the
// 50 ms-old queue numbers cannot see yet.
// Latency, what real responses took, is as strong as the queue: it sees a
// slow endpoint whose queue looks normal.
var DefaultWeights = ResolvedWeights{Queue: 2, KVCache: 2, Prefix: 3, LoRA: 1, InFlight: 1, Session: 2, Latency: 2}

// Response feedback.
const (
	// An observed latency halves its weight every 10 s without a new one:
	// long enough to outlast a burst, short enough to probe a recovered
	// endpoint within a minute.
	DefaultLatencyHalfLife = 10 * time.Second
	// A failed endpoint sits out 1 s, doubling per consecutive failure up
	// to 10 s: a crash-looping pod stops taking traffic, a one-off error
	// costs a second.
	DefaultCooldown    = time.Second
	DefaultMaxCooldown = 10 * time.Second
)

// DefaultRequestUsage: ask streams for the usage their clients did not ask
// for (and strip it on the way back). Clients see the same bytes either
// way; the gateway sees the tokens.
const DefaultRequestUsage = true

// Prefix-cache index.
const (
	DefaultMaxBlocks = 256
	MaxMaxBlocks     = 4096
	// DefaultLRUCapacity is the block hashes remembered per endpoint, the
	// EPP's figure: ~64 GB of HBM left for KV cache on an 80 GB GPU serving
	// an 8B model holds ~500K tokens, i.e. ~31K blocks of 16 tokens.
	DefaultLRUCapacity = 31250
	MaxBlockChars      = 1 << 16
	MaxLRUCapacity     = 10_000_000
)
