package config

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

	// ignored lists the fields of a newer-version config that this filter
	// does not know and ignored.
	ignored []string
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
