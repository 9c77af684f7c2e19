// Package spec is the control plane's own configuration: the YAML a user
// writes to describe listeners, models, pools and external backends. It is
// the translator's input. Models, pools and limits reuse the filter's types
// (filter/config) so that whatever the filter learns to read, such as
// per-pool scheduler settings, flows through without being redefined here.
//
// Parsing is pure. The control plane never reads API keys: a backend's
// config only says where, inside the Envoy container, Envoy finds its key
// (an SDS secret file), so no key passes through the control plane or xDS.
package spec

import (
	"strings"

	"github.com/inflow-gateway/inflow/filter/config"
)

// DefaultLibraryPath is where the custom Envoy image installs the filter.
const DefaultLibraryPath = "/usr/local/lib/inflow/inflow.so"

// DefaultCAFile is the CA bundle of the Ubuntu-based Envoy contrib image,
// used to verify external backends unless a backend names its own.
const DefaultCAFile = "/etc/ssl/certs/ca-certificates.crt"

// Config is the whole control-plane configuration file.
//
// It embeds the filter's config.Config, so models, pools (with their
// scheduler settings), limits, objectives and whatever the filter's schema
// gains later are read from the same YAML keys and handed to the filter
// unchanged. Backends is the one key redefined here: the outer field
// shadows the embedded one (encoding/json picks the shallower field) and
// carries what only Envoy needs (URL, key, CA).
type Config struct {
	config.Config
	// Filter says where Envoy finds the Go filter library.
	Filter Filter `json:"filter,omitzero"`
	// Listeners are the client-facing ports; each gets its own routes.
	Listeners []Listener `json:"listeners"`
	// Backends are external OpenAI-compatible services.
	Backends []Backend `json:"backends,omitempty"`
	// ModelRoutes are per-model route settings (hostnames, timeout), by
	// model name (routes.go).
	ModelRoutes map[string]ModelRoute `json:"model_routes,omitempty"`
	// Kubernetes, when set, adds what the API server holds (kubernetes.go).
	Kubernetes *Kubernetes `json:"kubernetes,omitempty"`
	// EnvoyGateway, when set, also serves Envoy Gateway's proxies
	// (envoygateway.go); listeners may then be empty.
	EnvoyGateway *EnvoyGateway `json:"envoy_gateway,omitempty"`
	// AccessLog is every listener's access log; nil logs in the default
	// JSON format to the Envoy container's stdout (accesslog.go).
	AccessLog *AccessLog `json:"access_log,omitempty"`
}

// Filter locates the Go filter shared library inside the Envoy container.
type Filter struct {
	// LibraryPath defaults to DefaultLibraryPath.
	LibraryPath string `json:"library_path,omitempty"`
}

// EffectiveLibraryPath is the library path with its default applied.
func (f Filter) EffectiveLibraryPath() string {
	if f.LibraryPath == "" {
		return DefaultLibraryPath
	}
	return f.LibraryPath
}

// Listener is one address Envoy accepts client requests on.
type Listener struct {
	Name string `json:"name"`
	// Address is the IP to bind, e.g. 0.0.0.0 or ::.
	Address string `json:"address"`
	Port    uint32 `json:"port"`
	// Hostnames restrict the Host/:authority served; empty means any.
	Hostnames []string `json:"hostnames,omitempty"`
	// TLS, when set, terminates TLS with the given files.
	TLS *TLS `json:"tls,omitempty"`
}

// TLS names a certificate and key as paths inside the Envoy container: the
// control plane passes them through and Envoy reads them.
type TLS struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// Backend is an external OpenAI-compatible service. The embedded
// config.Backend is what the filter sees; the rest stays in Envoy's routes
// and clusters.
type Backend struct {
	config.Backend
	// BaseURL is the OpenAI-style base, e.g. https://api.openai.com/v1.
	// Client paths under /v1/ are forwarded below its path.
	BaseURL string `json:"base_url"`
	// APIKey, when set, is injected by Envoy into every request to this
	// backend, replacing whatever the client sent in that header. The
	// control plane only says where Envoy reads it.
	APIKey *APIKey `json:"api_key,omitempty"`
	// CAFile verifies the backend's certificate (https only); defaults to
	// DefaultCAFile, a path inside the Envoy container.
	CAFile string `json:"ca_file,omitempty"`
}

// APIKey locates a backend's key inside the Envoy container: an SDS file
// (a DiscoveryResponse holding one Secret with a generic_secret), which
// Envoy reads and re-reads when it is replaced. The key never reaches the
// control plane, so it is in no xDS resource.
type APIKey struct {
	// SecretFile is the SDS file's absolute path inside the Envoy
	// container (a mounted Kubernetes Secret or compose volume).
	SecretFile string `json:"secret_file"`
	// SecretName is the Secret's name inside that file; default the
	// backend's name.
	SecretName string `json:"secret_name,omitempty"`
	// Header carries the key; default "authorization", sent as
	// "Bearer <key>". Any other header (e.g. Azure's "api-key") gets the
	// key alone.
	Header string `json:"header,omitempty"`

	// File and Env are the old forms, which sent the key over xDS. They
	// are refused with the way to migrate rather than as unknown fields.
	File string `json:"file,omitempty"`
	Env  string `json:"env,omitempty"`
}

// DefaultAPIKeyHeader is the header an API key goes in by default.
const DefaultAPIKeyHeader = "authorization"

// EffectiveSecretName is the Secret name with its default, the backend's name.
func (b Backend) EffectiveSecretName() string {
	if b.APIKey != nil && b.APIKey.SecretName != "" {
		return b.APIKey.SecretName
	}
	return b.Name
}

// EffectiveHeader is the key's header, lower case, with its default.
func (k APIKey) EffectiveHeader() string {
	if k.Header == "" {
		return DefaultAPIKeyHeader
	}
	return strings.ToLower(k.Header)
}

// Prefix goes before the key in the header: "Bearer " in Authorization.
func (k APIKey) Prefix() string {
	if k.EffectiveHeader() == DefaultAPIKeyHeader {
		return "Bearer "
	}
	return ""
}

// FilterConfig is the filter's view of c: exactly the config the golang
// filter receives as its plugin_config.
func (c *Config) FilterConfig() *config.Config {
	fc := c.Config // a shallow copy: the slices are shared, never modified
	fc.Backends = nil
	for _, b := range c.Backends {
		fc.Backends = append(fc.Backends, b.Backend)
	}
	return &fc
}
