package config

import "github.com/inflow-gateway/inflow/filter/cost"

// Config is what the gateway serves: client-facing models, the pools of model
// servers and the external backends they go to, and request limits.
type Config struct {
	// Version is the schema version of the config's writer (SchemaVersion
	// when ToAny writes it); 0 or absent means 1. See the package doc.
	Version  int       `json:"version,omitempty"`
	Models   []Model   `json:"models"`
	Pools    []Pool    `json:"pools,omitempty"`
	Backends []Backend `json:"backends,omitempty"`
	Limits   Limits    `json:"limits,omitzero"`
	// Objectives maps x-gateway-inference-objective values to priorities;
	// priority < 0 is sheddable (429 when the pool is saturated).
	Objectives map[string]int `json:"objectives,omitempty"`
	// Costs are written as io.envoy.ai_gateway dynamic metadata at the end
	// of every successful response (Envoy AI Gateway's
	// globalLLMRequestCosts); a model's own costs win for the same key.
	// None by default. Schema version 3.
	Costs []cost.Spec `json:"costs,omitempty" since:"3"`
	// Usage tunes how the filter reads usage on the way back. Schema
	// version 3.
	Usage Usage `json:"usage,omitzero" since:"3"`
	// GenAIMetrics serves the OpenTelemetry GenAI metrics in Prometheus
	// format. Schema version 3.
	GenAIMetrics GenAIMetrics `json:"genai_metrics,omitzero" since:"3"`
	// SharedState lets the Envoy replicas in front of the same pools share
	// what each one alone would not know, so picking quality and scrape
	// load do not depend on how many replicas run. Schema version 6.
	SharedState SharedState `json:"shared_state,omitzero" since:"6"`

	// ignored lists the fields of a newer-version config that this filter
	// does not know and ignored.
	ignored []string
}

// Usage tunes the response path.
type Usage struct {
	// RequestUsage: for a streaming chat or completions request to a pool
	// that does not ask for usage, the filter asks the server for it
	// (stream_options.include_usage) and removes the extra usage chunk from
	// what the client receives, so the client sees what it would have
	// without the filter. nil means true; a filter that does not know the
	// field (version 2 and older) never asks, which is as safe.
	RequestUsage *bool `json:"request_usage,omitempty" since:"3"`
}

// EffectiveRequestUsage is RequestUsage with its default applied.
func (u Usage) EffectiveRequestUsage() bool {
	if u.RequestUsage == nil {
		return DefaultRequestUsage
	}
	return *u.RequestUsage
}

// GenAIMetrics says where the filter serves its GenAI metrics.
type GenAIMetrics struct {
	// Address is the ip:port of the HTTP listener serving /metrics (e.g.
	// 0.0.0.0:9464); empty means not served. The listener runs in the
	// background of the Envoy process, off the request path.
	Address string `json:"address,omitempty" since:"3"`
}

// SharedState names the state relay (inflow-controlplane
// --relay-address). Through it each replica learns where the others sent
// which prompt prefix (its prefix index then knows every replica's
// placements) and gets the others' scrapes of the servers (so each server
// is scraped about once per scrape_interval, not once per replica). It all
// happens in the background: a pick only queues its placement. A replica
// that cannot reach the relay works alone, as without this setting.
type SharedState struct {
	// Relay is the relay's host:port (a DNS name or an IP); empty means
	// none. A filter that does not know the field (version 4 and older)
	// works alone, which is as safe.
	Relay string `json:"relay,omitempty" since:"6"`
}

// Ignored lists, as JSON paths, the fields Parse ignored because the
// config is of a newer schema version than this filter and they are newer
// than the filter. Empty for a config of this version or older, whose
// unknown fields are errors.
func (c *Config) Ignored() []string { return c.ignored }

// Model is one model name clients may ask for. Exactly one of Pool or
// Backend says where it is served.
type Model struct {
	// Name is the client-facing model name, matched exactly (case-sensitive).
	Name string `json:"name"`
	// Pool names the pool of self-hosted model servers that serve it.
	Pool string `json:"pool,omitempty"`
	// Backend names an external OpenAI-compatible backend that serves it.
	Backend string `json:"backend,omitempty"`
	// Rewrite, when set, replaces the body's model with one of these served
	// names, chosen by weight (e.g. a base model and its LoRA adapters).
	Rewrite []Target `json:"rewrite,omitempty"`
	// OwnedBy is reported by GET /v1/models; defaults to "inflow".
	OwnedBy string `json:"owned_by,omitempty"`
	// Costs of this model's requests (Envoy AI Gateway's llmRequestCosts);
	// they replace gateway-wide costs with the same metadata_key. Schema
	// version 3.
	Costs []cost.Spec `json:"costs,omitempty" since:"3"`
	// BackendRefs split the model across external backends (Envoy AI
	// Gateway's AIServiceBackend refs of one rule, with their weights,
	// priorities and modelNameOverrides): each request goes to one, chosen
	// by weight among the refs of the lowest priority with a backend in
	// service, a backend leaving service for a while after consecutive 5xx
	// (Envoy's outlier detection defaults). The filter names its choice in
	// the x-inflow-backend header, which the control plane's routes match.
	// Backend must then name the backend of one ref, and Rewrite may be
	// set: they are what a filter that does not know this field serves
	// (schema 4 and older: one backend), and this filter ignores them.
	// Schema version 5.
	BackendRefs []BackendRef `json:"backend_refs,omitempty" since:"5"`
}

// BackendRef is one external backend a model may go to.
type BackendRef struct {
	// Backend names a backend of Config.Backends.
	Backend string `json:"backend" since:"5"`
	// Model is the name the backend serves the model under; empty keeps
	// the client's.
	Model string `json:"model,omitempty" since:"5"`
	// Weight is the share among refs of the same priority; nil means 1,
	// 0 takes no traffic.
	Weight *uint32 `json:"weight,omitempty" since:"5"`
	// Priority 0 (the default) is used first; a higher one only while no
	// backend of a lower priority is in service.
	Priority uint32 `json:"priority,omitempty" since:"5"`
}

// EffectiveWeight is the weight with its default applied.
func (r BackendRef) EffectiveWeight() uint32 {
	if r.Weight == nil {
		return 1
	}
	return *r.Weight
}

// Target is one served model name of a rewrite and its share of requests.
type Target struct {
	Model string `json:"model"`
	// Weight is relative to the other targets of the same model; nil means 1.
	Weight *uint32 `json:"weight,omitempty"`
}

// EffectiveWeight is the weight with its default applied.
func (t Target) EffectiveWeight() uint32 {
	if t.Weight == nil {
		return 1
	}
	return *t.Weight
}

// Pool is a set of model-server endpoints the filter picks from.
type Pool struct {
	Name string `json:"name"`
	// Endpoints are "ip:port" addresses of model servers (pods). An empty
	// list is valid: requests for its models then get 503.
	Endpoints []string `json:"endpoints"`
	// Scheduler tunes endpoint picking; nil means the defaults.
	Scheduler *Scheduler `json:"scheduler,omitempty"`
	// Destination says how Envoy reaches the endpoint the filter picked:
	// DestinationOverrideHost (the default) or DestinationOriginalDst.
	// Schema version 2. Empty (and a version-1 filter, which ignores it)
	// writes the ordered list, as version 1 always did; an ORIGINAL_DST
	// cluster then falls back to the header's primary.
	Destination Destination `json:"destination,omitempty" since:"2"`
	// Objectives maps x-gateway-inference-objective values to priorities
	// for requests this pool serves, ahead of the top-level Objectives: an
	// InferenceObjective belongs to one pool, as it does for the EPP.
	// Schema version 4; a filter that ignores it applies the top-level map
	// only (it may then serve what it should shed).
	Objectives map[string]int `json:"objectives,omitempty" since:"4"`
}

// Destination is how a pool's cluster turns the filter's pick into an
// upstream connection. The filter writes the pick in the form its mode's
// cluster reads; the control plane builds the matching cluster.
type Destination string

const (
	// DestinationOverrideHost: the pool is an EDS cluster whose members are
	// its endpoints, and Envoy's OverrideHost load balancer reads the
	// filter's ordered list (primary, then fallbacks) from metadata; each
	// retry takes the next entry. Addresses outside the pool are skipped.
	DestinationOverrideHost Destination = "override_host"
	// DestinationOriginalDst: an ORIGINAL_DST cluster connects to the one
	// address the filter names (the primary); retries go to it again.
	DestinationOriginalDst Destination = "original_dst"
)

// Effective is the mode with its default applied.
func (d Destination) Effective() Destination {
	if d == "" {
		return DefaultDestination
	}
	return d
}

// Backend is an external OpenAI-compatible service. The filter only needs
// its name: the control plane owns its address and credentials and routes
// to it on the x-ai-eg-model header.
type Backend struct {
	Name string `json:"name"`
}

// Limits bounds what one request may cost the gateway.
type Limits struct {
	// MaxRequestBodyBytes is the largest request body accepted (413 above);
	// 0 means DefaultMaxRequestBodyBytes.
	MaxRequestBodyBytes int64 `json:"max_request_body_bytes,omitempty"`
}

// EffectiveMaxRequestBodyBytes is the body limit with its default applied.
func (l Limits) EffectiveMaxRequestBodyBytes() int64 {
	if l.MaxRequestBodyBytes == 0 {
		return DefaultMaxRequestBodyBytes
	}
	return l.MaxRequestBodyBytes
}
