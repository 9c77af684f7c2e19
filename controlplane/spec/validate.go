package spec

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"

	"github.com/inflow-gateway/inflow/filter/config"
)

// Validate reports every problem in c, each naming its field as a path in
// the YAML (e.g. "backends[0].base_url"). Models, pools and limits are
// checked by the filter's own validation, so the control plane never
// accepts a config the filter would refuse.
func (c *Config) Validate() error {
	var errs []error
	if p := c.Filter.LibraryPath; p != "" && !path.IsAbs(p) {
		errs = append(errs, config.FieldErrorf("filter.library_path", "must be an absolute path, got %q", p))
	}
	// Envoy Gateway's proxies bring their own listeners.
	if len(c.Listeners) > 0 || c.EnvoyGateway == nil {
		errs = append(errs, validateListeners(c.Listeners)...)
	}
	if c.EnvoyGateway != nil {
		errs = append(errs, validateEnvoyGateway(c.EnvoyGateway)...)
	}
	errs = append(errs, validateAccessLog("access_log", c.AccessLog)...)
	switch {
	case c.Kubernetes != nil:
		errs = append(errs, validateKubernetes(c.Kubernetes)...)
	case len(c.Models) == 0 && (c.EnvoyGateway == nil || len(c.Pools) == 0):
		// Without Kubernetes, a file with no models serves nothing (in
		// Envoy Gateway mode, pools alone serve the routes bound to them):
		// a mistake, not an intent.
		errs = append(errs, config.FieldErrorf("models", "at least one model is required (or a kubernetes section, or pools for Envoy Gateway's routes)"))
	}
	for i, b := range c.Backends {
		errs = append(errs, validateBackend(fmt.Sprintf("backends[%d]", i), b)...)
	}
	errs = append(errs, validateModelRoutes(c)...)
	// The filter config mirrors this file's models/pools/backends/limits
	// structure, so its field paths are valid paths here too.
	if err := c.FilterConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

func validateListeners(ls []Listener) []error {
	if len(ls) == 0 {
		return []error{config.FieldErrorf("listeners", "at least one listener is required")}
	}
	var errs []error
	names := make(map[string]bool, len(ls))
	addrs := make(map[netip.AddrPort]bool, len(ls))
	for i, l := range ls {
		p := fmt.Sprintf("listeners[%d]", i)
		switch {
		case l.Name == "":
			errs = append(errs, config.FieldErrorf(p+".name", "must not be empty"))
		case names[l.Name]:
			errs = append(errs, config.FieldErrorf(p+".name", "duplicate listener %q", l.Name))
		}
		names[l.Name] = true
		ip, err := netip.ParseAddr(l.Address)
		if err != nil || ip.Zone() != "" {
			errs = append(errs, config.FieldErrorf(p+".address", "%q is not an IP address (e.g. 0.0.0.0)", l.Address))
		}
		if l.Port == 0 || l.Port > 65535 {
			errs = append(errs, config.FieldErrorf(p+".port", "must be 1-65535, got %d", l.Port))
		}
		if err == nil && l.Port > 0 && l.Port <= 65535 {
			ap := netip.AddrPortFrom(ip, uint16(l.Port))
			if addrs[ap] {
				errs = append(errs, config.FieldErrorf(p, "another listener already uses %s", ap))
			}
			addrs[ap] = true
		}
		errs = append(errs, validateHostnames(p+".hostnames", l.Hostnames)...)
		if l.TLS != nil {
			if l.TLS.CertFile == "" {
				errs = append(errs, config.FieldErrorf(p+".tls.cert_file", "must not be empty"))
			}
			if l.TLS.KeyFile == "" {
				errs = append(errs, config.FieldErrorf(p+".tls.key_file", "must not be empty"))
			}
		}
	}
	return errs
}

// validateHostnames accepts what Envoy's virtual host domains accept: exact
// names and one leading or trailing wildcard.
func validateHostnames(p string, hs []string) []error {
	var errs []error
	seen := make(map[string]bool, len(hs))
	for j, h := range hs {
		f := fmt.Sprintf("%s[%d]", p, j)
		switch {
		case h == "" || strings.ContainsAny(h, " /\t"):
			errs = append(errs, config.FieldErrorf(f, "%q is not a hostname", h))
		case strings.Count(h, "*") > 1 || (strings.Contains(h, "*") && !strings.HasPrefix(h, "*") && !strings.HasSuffix(h, "*")):
			errs = append(errs, config.FieldErrorf(f, "%q: a wildcard may only lead or trail", h))
		case seen[strings.ToLower(h)]:
			errs = append(errs, config.FieldErrorf(f, "duplicate hostname %q", h))
		}
		seen[strings.ToLower(h)] = true
	}
	return errs
}

func validateBackend(p string, b Backend) []error {
	var errs []error
	if _, err := ParseBaseURL(b.BaseURL); err != nil {
		errs = append(errs, config.FieldErrorf(p+".base_url", "%v", err))
	}
	if k := b.APIKey; k != nil {
		errs = append(errs, validateAPIKey(p+".api_key", *k)...)
	}
	if b.CAFile != "" && !path.IsAbs(b.CAFile) {
		errs = append(errs, config.FieldErrorf(p+".ca_file", "must be an absolute path inside the Envoy container, got %q", b.CAFile))
	}
	return errs
}

// migrateAPIKey is the answer to the old api_key forms.
const migrateAPIKey = "API keys no longer pass through the control plane (they reached every xDS client): " +
	"put the key in an SDS secret file mounted into the Envoy container and set api_key.secret_file " +
	"(controlplane/README.md, \"API keys\")"

func validateAPIKey(p string, k APIKey) []error {
	var errs []error
	if k.File != "" || k.Env != "" {
		errs = append(errs, config.FieldErrorf(p, "%s", migrateAPIKey))
	}
	switch {
	case k.SecretFile == "":
		errs = append(errs, config.FieldErrorf(p+".secret_file", "must name the SDS secret file inside the Envoy container"))
	case !path.IsAbs(k.SecretFile) || path.Clean(k.SecretFile) != k.SecretFile || path.Dir(k.SecretFile) == "/":
		errs = append(errs, config.FieldErrorf(p+".secret_file", "must be a clean absolute path below a directory (Envoy watches that directory), got %q", k.SecretFile))
	}
	if n := k.SecretName; n != "" && strings.ContainsAny(n, " \t\r\n") {
		errs = append(errs, config.FieldErrorf(p+".secret_name", "%q must not contain white space", n))
	}
	if h := k.Header; h != "" && !config.IsHeaderName(h) {
		errs = append(errs, config.FieldErrorf(p+".header", "%q is not a header name", h))
	}
	return errs
}
