// Package genai keeps the OpenTelemetry GenAI metrics of the gateway, with
// Envoy AI Gateway's names, units, buckets and attributes
// (internal/metrics/genai.go), so dashboards built for it work, and serves
// them in the Prometheus text format the way Envoy AI Gateway's Prometheus
// exporter names them (gen_ai_client_token_usage_*,
// gen_ai_server_request_duration_seconds_*, ...; attribute dots become
// underscores).
//
// Recording is lock-free in steady state: each label combination's
// observers are looked up in a sync.Map (an atomic read once the entry
// exists) and histograms are client_golang's atomic counters. The metrics
// are process-wide, so they survive config updates.
package genai

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names as Envoy AI Gateway's Prometheus exporter shows them.
const (
	MetricTokenUsage      = "gen_ai_client_token_usage"
	MetricRequestDuration = "gen_ai_server_request_duration_seconds"
	MetricTTFT            = "gen_ai_server_time_to_first_token_seconds"
	MetricTPOT            = "gen_ai_server_time_per_output_token_seconds"
)

// Attribute (label) names and values, Envoy AI Gateway's.
const (
	LabelOperation     = "gen_ai_operation_name"
	LabelProvider      = "gen_ai_provider_name"
	LabelOriginalModel = "gen_ai_original_model"
	LabelRequestModel  = "gen_ai_request_model"
	LabelResponseModel = "gen_ai_response_model"
	LabelTokenType     = "gen_ai_token_type"
	LabelErrorType     = "error_type"

	TokenInput              = "input"
	TokenOutput             = "output"
	TokenCachedInput        = "cached_input"
	TokenCacheCreationInput = "cache_creation_input"
	TokenReasoning          = "reasoning"

	// Unknown is Envoy AI Gateway's value for a model it could not tell.
	Unknown = "unknown"
)

// Buckets, Envoy AI Gateway's.
var (
	tokenBuckets    = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	durationBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	ttftBuckets     = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0}
	tpotBuckets     = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5}
)

var baseLabels = []string{LabelOperation, LabelProvider, LabelOriginalModel, LabelRequestModel, LabelResponseModel}

// Metrics are the four GenAI histograms.
type Metrics struct {
	Registry *prometheus.Registry

	tokenUsage, requestDuration, ttft, tpot *prometheus.HistogramVec
	observers                               sync.Map // Attrs -> *observers
}

// Attrs identify a request's series.
type Attrs struct {
	Operation, Provider, OriginalModel, RequestModel, ResponseModel string
	// ErrorType is empty for a success (the attribute is then absent, as
	// in Envoy AI Gateway's series).
	ErrorType string
}

// observers are the series of one Attrs, each created on first use so a
// scrape shows only series that have samples, as an OpenTelemetry
// exporter does.
type observers struct {
	duration, ttft, tpot lazy
	tokens               [5]lazy // by tokenTypes index
}

var tokenTypes = [5]string{TokenInput, TokenOutput, TokenCachedInput, TokenCacheCreationInput, TokenReasoning}

// lazy is a histogram series created at its first observation.
type lazy struct {
	vec    *prometheus.HistogramVec
	labels []string
	obs    atomic.Pointer[prometheus.Observer]
}

func (l *lazy) Observe(v float64) {
	o := l.obs.Load()
	if o == nil {
		h := l.vec.WithLabelValues(l.labels...)
		o = &h
		l.obs.Store(o)
	}
	(*o).Observe(v)
}

// New returns empty metrics registered on a new registry.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	hist := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
		m.Registry.MustRegister(h)
		return h
	}
	m.tokenUsage = hist(MetricTokenUsage, "Number of tokens processed.", tokenBuckets,
		append(baseLabels[:len(baseLabels):len(baseLabels)], LabelTokenType)...)
	m.requestDuration = hist(MetricRequestDuration,
		"Generative AI server request duration such as time-to-last byte or last output token.", durationBuckets,
		append(baseLabels[:len(baseLabels):len(baseLabels)], LabelErrorType)...)
	m.ttft = hist(MetricTTFT, "Time to receive first token in streaming responses.", ttftBuckets, baseLabels...)
	m.tpot = hist(MetricTPOT,
		"Time per output token generated after the first token for successful responses.", tpotBuckets, baseLabels...)
	return m
}

// Default is the process's metrics, which the filter records and serves.
var Default = New()

func (m *Metrics) observersFor(a Attrs) *observers {
	if o, ok := m.observers.Load(a); ok {
		return o.(*observers)
	}
	base := []string{a.Operation, a.Provider, a.OriginalModel, a.RequestModel, a.ResponseModel}
	o := &observers{
		duration: lazy{vec: m.requestDuration, labels: append(base[:5:5], a.ErrorType)},
		ttft:     lazy{vec: m.ttft, labels: base},
		tpot:     lazy{vec: m.tpot, labels: base},
	}
	for i, t := range tokenTypes {
		o.tokens[i] = lazy{vec: m.tokenUsage, labels: append(base[:5:5], t)}
	}
	actual, _ := m.observers.LoadOrStore(a, o)
	return actual.(*observers)
}

// Request is what one finished request contributes.
type Request struct {
	Attrs
	// Duration is from the request's start to the end of its response, in
	// seconds.
	Duration float64
	// Streaming responses also have a time to first token and, with at
	// least two output tokens, a time per output token (seconds).
	Streaming bool
	HasTTFT   bool
	TTFT      float64
	TPOT      float64
	HasTPOT   bool
	// Tokens by type (input, output, cached_input, cache_creation_input,
	// reasoning); only those with Has set are recorded.
	Tokens    [5]uint64
	HasTokens [5]bool
}

// Record adds one request. Token usage is recorded whatever the outcome
// (a failed stream's usage last seen); time per output token only for a
// success, as Envoy AI Gateway does.
func (m *Metrics) Record(r *Request) {
	o := m.observersFor(r.Attrs)
	o.duration.Observe(r.Duration)
	for i, has := range r.HasTokens {
		if has {
			o.tokens[i].Observe(float64(r.Tokens[i]))
		}
	}
	if !r.Streaming {
		return
	}
	if r.HasTTFT {
		o.ttft.Observe(r.TTFT)
	}
	if r.HasTPOT && r.ErrorType == "" {
		o.tpot.Observe(r.TPOT)
	}
}
