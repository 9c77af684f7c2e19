package config

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Scheduler tunes how the filter picks an endpoint of a pool. Every field
// is optional; the zero value is the EPP's default profile plus Inflow's
// local in-flight and LoRA scorers.
type Scheduler struct {
	// MetricsFormat names the model server's metric set: "vllm" (default),
	// "sglang", "trtllm", or "custom" (then metric_names must name at least
	// waiting and kv_cache_usage).
	MetricsFormat string `json:"metrics_format,omitempty"`
	// MetricNames overrides single names of the chosen set.
	MetricNames *MetricNames `json:"metric_names,omitempty"`
	// MetricsPath is the scrape path; default "/metrics".
	MetricsPath string `json:"metrics_path,omitempty"`
	// ScrapeInterval, ScrapeTimeout and Staleness are Go duration strings
	// ("50ms"); defaults 50ms, 100ms and 200ms. Metrics older than
	// Staleness are not trusted.
	ScrapeInterval string `json:"scrape_interval,omitempty"`
	ScrapeTimeout  string `json:"scrape_timeout,omitempty"`
	Staleness      string `json:"staleness,omitempty"`
	// Weights of the scorers; each scorer's output is in [0,1].
	Weights *Weights `json:"weights,omitempty"`
	// Saturation thresholds: an endpoint with fresh metrics at or under both
	// can take more work; a pool with none is saturated.
	Saturation *Saturation `json:"saturation,omitempty"`
	// Fallbacks is how many next-best endpoints follow the primary in the
	// destination list; default 2.
	Fallbacks *int `json:"fallbacks,omitempty"`
	// SessionHeader names the request header whose value pins a session to
	// an endpoint (session affinity scorer). Empty disables it.
	SessionHeader string `json:"session_header,omitempty"`
	// PrefixCache tunes the approximate prefix-cache index.
	PrefixCache *PrefixCache `json:"prefix_cache,omitempty"`
	// LoRA lists what the scheduler should know about adapters.
	LoRA *LoRA `json:"lora,omitempty"`
	// Feedback tunes what real responses tell the scheduler.
	Feedback *Feedback `json:"feedback,omitempty" since:"3"`
}

// Feedback tunes the signals only the in-process filter sees. Durations
// are Go duration strings; every field is optional.
type Feedback struct {
	// LatencyHalfLife: an endpoint's observed time to first token and time
	// per output token lose half their weight for every this long without
	// a new observation, so an endpoint that lost traffic for being slow
	// gets probed again. Default 10s.
	LatencyHalfLife string `json:"latency_half_life,omitempty" since:"3"`
	// Cooldown keeps an endpoint out of picks after a failed request (a
	// 5xx, an upstream reset, a connect error), doubled for each
	// consecutive failure up to MaxCooldown. Defaults 1s and 10s.
	Cooldown    string `json:"cooldown,omitempty" since:"3"`
	MaxCooldown string `json:"max_cooldown,omitempty" since:"3"`
	// LoadReports asks the server for its per-response load report
	// (endpoint-load-metrics-format: TEXT; vLLM answers non-streaming chat
	// and completions with endpoint-load-metrics), which updates the
	// endpoint's queue and KV-cache numbers between scrapes. Default true
	// for metrics_format vllm, false otherwise.
	LoadReports *bool `json:"load_reports,omitempty" since:"3"`
}

// MetricNames overrides metric names of a built-in set (or defines a custom
// one). Empty fields keep the set's names.
type MetricNames struct {
	Waiting      string `json:"waiting,omitempty"`
	Running      string `json:"running,omitempty"`
	KVCacheUsage string `json:"kv_cache_usage,omitempty"`
	LoRAInfo     string `json:"lora_info,omitempty"`
	CacheConfig  string `json:"cache_config,omitempty"`
	// BlockSizeLabel is the cache_config label carrying the KV block size in
	// tokens; with cache_config set and this empty, the value is used.
	BlockSizeLabel string `json:"block_size_label,omitempty"`
}

// Weights are the scorer weights; nil fields take the defaults below.
type Weights struct {
	Queue    *float64 `json:"queue,omitempty"`
	KVCache  *float64 `json:"kv_cache,omitempty"`
	Prefix   *float64 `json:"prefix,omitempty"`
	LoRA     *float64 `json:"lora,omitempty"`
	InFlight *float64 `json:"in_flight,omitempty"`
	Session  *float64 `json:"session,omitempty"`
	// Latency weighs the observed time to first token and time per output
	// token of real responses.
	Latency *float64 `json:"latency,omitempty" since:"3"`
	// Placement weighs a rendezvous hash of the prompt's first block, the
	// same on every replica: replicas without a relay then agree on where
	// prompts that start alike go. Default 0 (off).
	Placement *float64 `json:"placement,omitempty" since:"6"`
}

// Saturation holds the saturation thresholds; nil fields take defaults.
type Saturation struct {
	// QueueDepth is the most waiting requests of an endpoint that can take
	// more work; default 5.
	QueueDepth *float64 `json:"queue_depth,omitempty"`
	// KVCacheUsage is the highest KV-cache usage (0..1) of such an
	// endpoint; default 0.8.
	KVCacheUsage *float64 `json:"kv_cache_usage,omitempty"`
}

// PrefixCache tunes the prefix index; zero fields take defaults.
type PrefixCache struct {
	// BlockChars is the prompt characters per hashed block. 0 derives it
	// from the server's KV block size (4 characters per token), 64 when the
	// server does not report one.
	BlockChars int `json:"block_chars,omitempty"`
	// MaxBlocks caps the blocks hashed per request; default 256.
	MaxBlocks int `json:"max_blocks,omitempty"`
	// LRUCapacity is the block hashes remembered per endpoint; default 31250.
	LRUCapacity int `json:"lru_capacity,omitempty"`
}

// LoRA describes the adapters served by the pool.
type LoRA struct {
	// Adapters are served model names that are LoRA adapters. The scheduler
	// also recognises any adapter an endpoint reports; listing them lets an
	// adapter no endpoint has loaded yet be placed where there is room.
	Adapters []string `json:"adapters,omitempty"`
}

// ResolvedWeights are weights with defaults applied.
type ResolvedWeights struct {
	Queue, KVCache, Prefix, LoRA, InFlight, Session, Latency, Placement float64
}

// ResolvedScheduler is a Scheduler with every default applied, as the
// runtime uses it. Metric names stay as configured: the runtime owns the
// built-in sets.
type ResolvedScheduler struct {
	MetricsFormat  string
	MetricNames    MetricNames
	MetricsPath    string
	ScrapeInterval time.Duration
	ScrapeTimeout  time.Duration
	Staleness      time.Duration
	Weights        ResolvedWeights
	QueueDepth     float64
	KVCacheUsage   float64
	Fallbacks      int
	SessionHeader  string
	BlockChars     int // 0: derive from the server
	MaxBlocks      int
	LRUCapacity    int
	LoRAAdapters   []string
	// Feedback settings.
	LatencyHalfLife time.Duration
	Cooldown        time.Duration
	MaxCooldown     time.Duration
	LoadReports     bool
}

// Resolve applies defaults. s may be nil. It assumes s passed validation;
// durations it cannot parse take their defaults.
func (s *Scheduler) Resolve() ResolvedScheduler {
	r := ResolvedScheduler{
		MetricsFormat:  DefaultMetricsFormat,
		MetricsPath:    DefaultMetricsPath,
		ScrapeInterval: DefaultScrapeInterval,
		ScrapeTimeout:  DefaultScrapeTimeout,
		Staleness:      DefaultStaleness,
		Weights:        DefaultWeights,
		QueueDepth:     DefaultQueueDepth,
		KVCacheUsage:   DefaultKVCacheUsage,
		Fallbacks:      DefaultFallbacks,
		MaxBlocks:      DefaultMaxBlocks,
		LRUCapacity:    DefaultLRUCapacity,

		LatencyHalfLife: DefaultLatencyHalfLife,
		Cooldown:        DefaultCooldown,
		MaxCooldown:     DefaultMaxCooldown,
		// Only vLLM sends load reports (a request header costs the others
		// nothing, but asking a server that never answers is noise).
		LoadReports: DefaultMetricsFormat == MetricsFormatVLLM,
	}
	if s == nil {
		r.Weights.Session = 0 // no session header, no session scorer
		return r
	}
	r.LoadReports = s.MetricsFormat == "" || s.MetricsFormat == MetricsFormatVLLM
	if fb := s.Feedback; fb != nil {
		setDuration(&r.LatencyHalfLife, fb.LatencyHalfLife)
		setDuration(&r.Cooldown, fb.Cooldown)
		setDuration(&r.MaxCooldown, fb.MaxCooldown)
		if fb.LoadReports != nil {
			r.LoadReports = *fb.LoadReports
		}
	}
	if s.MetricsFormat != "" {
		r.MetricsFormat = s.MetricsFormat
	}
	if s.MetricNames != nil {
		r.MetricNames = *s.MetricNames
	}
	if s.MetricsPath != "" {
		r.MetricsPath = s.MetricsPath
	}
	setDuration(&r.ScrapeInterval, s.ScrapeInterval)
	setDuration(&r.ScrapeTimeout, s.ScrapeTimeout)
	setDuration(&r.Staleness, s.Staleness)
	if w := s.Weights; w != nil {
		setFloat(&r.Weights.Queue, w.Queue)
		setFloat(&r.Weights.KVCache, w.KVCache)
		setFloat(&r.Weights.Prefix, w.Prefix)
		setFloat(&r.Weights.LoRA, w.LoRA)
		setFloat(&r.Weights.InFlight, w.InFlight)
		setFloat(&r.Weights.Session, w.Session)
		setFloat(&r.Weights.Latency, w.Latency)
		setFloat(&r.Weights.Placement, w.Placement)
	}
	if s.SessionHeader == "" {
		r.Weights.Session = 0
	}
	if sat := s.Saturation; sat != nil {
		setFloat(&r.QueueDepth, sat.QueueDepth)
		setFloat(&r.KVCacheUsage, sat.KVCacheUsage)
	}
	if s.Fallbacks != nil {
		r.Fallbacks = *s.Fallbacks
	}
	r.SessionHeader = strings.ToLower(s.SessionHeader)
	if p := s.PrefixCache; p != nil {
		r.BlockChars = p.BlockChars
		if p.MaxBlocks > 0 {
			r.MaxBlocks = p.MaxBlocks
		}
		if p.LRUCapacity > 0 {
			r.LRUCapacity = p.LRUCapacity
		}
	}
	if s.LoRA != nil {
		r.LoRAAdapters = s.LoRA.Adapters
	}
	return r
}

func setDuration(dst *time.Duration, s string) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		*dst = d
	}
}

func setFloat(dst *float64, v *float64) {
	if v != nil {
		*dst = *v
	}
}

// PriorityFor maps an x-gateway-inference-objective header value to a
// request priority through Objectives. Unknown or empty objectives get 0,
// the GIE default: served, never shed. Priority < 0 is sheddable.
func (c *Config) PriorityFor(objective string) int {
	return c.Objectives[objective]
}

// PriorityFor is the priority of objective for a request this pool serves:
// the pool's own objectives first, then the config's (global).
func (p *Pool) PriorityFor(global *Config, objective string) int {
	if prio, ok := p.Objectives[objective]; ok {
		return prio
	}
	return global.PriorityFor(objective)
}

func validateObjectives(path string, objectives map[string]int) []error {
	var errs []error
	for name := range objectives {
		if strings.TrimSpace(name) == "" {
			errs = append(errs, FieldErrorf(path, "objective names must not be empty"))
		}
	}
	return errs
}

func validateScheduler(path string, s *Scheduler) []error {
	if s == nil {
		return nil
	}
	var errs []error
	switch f := s.MetricsFormat; {
	case f == "" || slices.Contains(BuiltinMetricsFormats, f):
	case f == MetricsFormatCustom:
		if s.MetricNames == nil || s.MetricNames.Waiting == "" || s.MetricNames.KVCacheUsage == "" {
			errs = append(errs, FieldErrorf(path+".metric_names", "metrics_format %s needs at least waiting and kv_cache_usage", MetricsFormatCustom))
		}
	default:
		errs = append(errs, FieldErrorf(path+".metrics_format", "must be one of %s, %s; got %q",
			strings.Join(BuiltinMetricsFormats, ", "), MetricsFormatCustom, f))
	}
	if s.MetricsPath != "" && !strings.HasPrefix(s.MetricsPath, "/") {
		errs = append(errs, FieldErrorf(path+".metrics_path", "must start with /, got %q", s.MetricsPath))
	}
	set := map[string]bool{}
	for _, d := range []struct {
		name, value string
	}{{"scrape_interval", s.ScrapeInterval}, {"scrape_timeout", s.ScrapeTimeout}, {"staleness", s.Staleness}} {
		if d.value == "" {
			continue
		}
		if v, err := time.ParseDuration(d.value); err != nil || v <= 0 {
			errs = append(errs, FieldErrorf(path+"."+d.name, "must be a positive duration like \"50ms\", got %q", d.value))
			continue
		}
		set[d.name] = true
	}
	r := s.Resolve()
	if set["staleness"] || set["scrape_interval"] {
		if r.Staleness < r.ScrapeInterval {
			errs = append(errs, FieldErrorf(path+".staleness", "must be at least scrape_interval (%s), or every endpoint is always stale", r.ScrapeInterval))
		}
	}
	if w := s.Weights; w != nil {
		for _, f := range []struct {
			name string
			v    *float64
		}{{"queue", w.Queue}, {"kv_cache", w.KVCache}, {"prefix", w.Prefix}, {"lora", w.LoRA}, {"in_flight", w.InFlight}, {"session", w.Session}, {"latency", w.Latency}, {"placement", w.Placement}} {
			if f.v != nil && (!(*f.v >= 0) || math.IsInf(*f.v, 1)) {
				errs = append(errs, FieldErrorf(path+".weights."+f.name, "must be >= 0 and finite, got %v", *f.v))
			}
		}
		if w.Session != nil && *w.Session > 0 && s.SessionHeader == "" {
			errs = append(errs, FieldErrorf(path+".weights.session", "needs session_header"))
		}
	}
	if sat := s.Saturation; sat != nil {
		if q := sat.QueueDepth; q != nil && (!(*q >= 0) || math.IsInf(*q, 1)) {
			errs = append(errs, FieldErrorf(path+".saturation.queue_depth", "must be >= 0, got %v", *q))
		}
		if kv := sat.KVCacheUsage; kv != nil && !(*kv >= 0 && *kv <= 1) {
			errs = append(errs, FieldErrorf(path+".saturation.kv_cache_usage", "must be between 0 and 1, got %v", *kv))
		}
	}
	if f := s.Fallbacks; f != nil && (*f < 0 || *f > MaxFallbacks) {
		errs = append(errs, FieldErrorf(path+".fallbacks", "must be between 0 and %d, got %d", MaxFallbacks, *f))
	}
	if h := s.SessionHeader; h != "" && !IsHeaderName(h) {
		errs = append(errs, FieldErrorf(path+".session_header", "%q is not a valid header name", h))
	}
	if p := s.PrefixCache; p != nil {
		errs = append(errs, checkRange(path+".prefix_cache.block_chars", p.BlockChars, MaxBlockChars)...)
		errs = append(errs, checkRange(path+".prefix_cache.max_blocks", p.MaxBlocks, MaxMaxBlocks)...)
		errs = append(errs, checkRange(path+".prefix_cache.lru_capacity", p.LRUCapacity, MaxLRUCapacity)...)
	}
	if fb := s.Feedback; fb != nil {
		for _, d := range []struct{ name, value string }{
			{"latency_half_life", fb.LatencyHalfLife}, {"cooldown", fb.Cooldown}, {"max_cooldown", fb.MaxCooldown},
		} {
			if v, err := time.ParseDuration(d.value); d.value != "" && (err != nil || v <= 0) {
				errs = append(errs, FieldErrorf(path+".feedback."+d.name, "must be a positive duration like \"1s\", got %q", d.value))
			}
		}
		if r.MaxCooldown < r.Cooldown {
			errs = append(errs, FieldErrorf(path+".feedback.max_cooldown", "must be at least cooldown (%s)", r.Cooldown))
		}
	}
	if l := s.LoRA; l != nil {
		for i, a := range l.Adapters {
			if a == "" {
				errs = append(errs, FieldErrorf(fmt.Sprintf("%s.lora.adapters[%d]", path, i), "must not be empty"))
			}
		}
	}
	return errs
}

// checkRange accepts 0 (default) through limit.
func checkRange(field string, v, limit int) []error {
	if v < 0 || v > limit {
		return []error{FieldErrorf(field, "must be between 0 (default) and %d, got %d", limit, v)}
	}
	return nil
}

// IsHeaderName reports whether s is an HTTP header name (an RFC 9110
// token), as Envoy accepts them.
func IsHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}
