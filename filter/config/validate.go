package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/inflow-gateway/inflow/filter/cost"
)

// FieldError names the config field that is wrong, as a JSON path.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// FieldErrorf returns a *FieldError for field with a formatted reason; the
// control plane's own validation uses it too, so every config error reads
// the same.
func FieldErrorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate reports every problem in c, each naming its field. It does not
// modify c.
func (c *Config) Validate() error {
	var errs []error
	pools := make(map[string]bool, len(c.Pools))
	for i, p := range c.Pools {
		errs = append(errs, validatePool(fmt.Sprintf("pools[%d]", i), p, pools)...)
		errs = append(errs, validateScheduler(fmt.Sprintf("pools[%d].scheduler", i), p.Scheduler)...)
		errs = append(errs, validateObjectives(fmt.Sprintf("pools[%d].objectives", i), p.Objectives)...)
	}
	backends := make(map[string]bool, len(c.Backends))
	for i, b := range c.Backends {
		field := fmt.Sprintf("backends[%d].name", i)
		switch {
		case b.Name == "":
			errs = append(errs, FieldErrorf(field, "must not be empty"))
		case !validResourceName(b.Name):
			errs = append(errs, FieldErrorf(field, "%q %s", b.Name, resourceNameRule))
		case backends[b.Name]:
			errs = append(errs, FieldErrorf(field, "duplicate backend %q", b.Name))
		}
		backends[b.Name] = true
	}
	errs = append(errs, validateObjectives("objectives", c.Objectives)...)
	// No models is valid: every request then gets 404, as a gateway whose
	// routes have not been created yet should answer. A file that lists
	// none is refused by the control plane's own validation.
	models := make(map[string]bool, len(c.Models))
	for i, m := range c.Models {
		errs = append(errs, validateModel(fmt.Sprintf("models[%d]", i), m, models, pools, backends)...)
	}
	errs = append(errs, validateCosts("costs", c.Costs)...)
	if a := c.GenAIMetrics.Address; a != "" {
		if ap, err := netip.ParseAddrPort(a); err != nil || ap.Port() == 0 {
			errs = append(errs, FieldErrorf("genai_metrics.address", "%q is not an ip:port address", a))
		}
	}
	if r := c.SharedState.Relay; r != "" && !validHostPort(r) {
		errs = append(errs, FieldErrorf("shared_state.relay", "%q is not a host:port address", r))
	}
	if l := c.Limits.MaxRequestBodyBytes; l < 0 || l > MaxRequestBodyBytesCeiling {
		errs = append(errs, FieldErrorf("limits.max_request_body_bytes", "must be between 0 (default %d) and %d, got %d",
			DefaultMaxRequestBodyBytes, MaxRequestBodyBytesCeiling, l))
	}
	return errors.Join(errs...)
}

// validHostPort reports whether s is host:port with a non-empty host (a DNS
// name or an IP) and a port in 1..65535.
func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, "/?#@ ") {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n <= 65535
}

// IsResourceName reports whether name can be a pool, backend or cluster
// name (ResourceNameRule).
func IsResourceName(name string) bool { return validResourceName(name) }

// ResourceNameRule says what IsResourceName accepts.
const ResourceNameRule = resourceNameRule

// validResourceName reports whether name can become part of an Envoy
// cluster and stat name as is.
func validResourceName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return name != ""
}

const resourceNameRule = "may only hold letters, digits, '-', '_' and '.'"

func validatePool(path string, p Pool, seen map[string]bool) []error {
	var errs []error
	switch {
	case p.Name == "":
		errs = append(errs, FieldErrorf(path+".name", "must not be empty"))
	case !validResourceName(p.Name):
		errs = append(errs, FieldErrorf(path+".name", "%q %s", p.Name, resourceNameRule))
	case seen[p.Name]:
		errs = append(errs, FieldErrorf(path+".name", "duplicate pool %q", p.Name))
	}
	seen[p.Name] = true
	switch p.Destination {
	case "", DestinationOverrideHost, DestinationOriginalDst:
	default:
		errs = append(errs, FieldErrorf(path+".destination", "must be %q or %q, got %q",
			DestinationOverrideHost, DestinationOriginalDst, p.Destination))
	}
	addrs := make(map[netip.AddrPort]bool, len(p.Endpoints))
	for j, ep := range p.Endpoints {
		field := fmt.Sprintf("%s.endpoints[%d]", path, j)
		ap, err := netip.ParseAddrPort(ep)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			errs = append(errs, FieldErrorf(field, "%q is not an ip:port address", ep))
			continue
		}
		if canonical := ap.String(); canonical != ep {
			// Envoy names hosts in this form, and OverrideHost matches the
			// filter's list against those names as strings.
			errs = append(errs, FieldErrorf(field, "write %q as %q", ep, canonical))
			continue
		}
		if addrs[ap] {
			errs = append(errs, FieldErrorf(field, "duplicate endpoint %q", ep))
		}
		addrs[ap] = true
	}
	return errs
}

func validateModel(path string, m Model, seen, pools, backends map[string]bool) []error {
	var errs []error
	switch {
	case m.Name == "":
		errs = append(errs, FieldErrorf(path+".name", "must not be empty"))
	case seen[m.Name]:
		errs = append(errs, FieldErrorf(path+".name", "duplicate model %q", m.Name))
	}
	seen[m.Name] = true
	errs = append(errs, validateBackendRefs(path, m, backends)...)
	switch {
	case m.Pool != "" && m.Backend != "":
		errs = append(errs, FieldErrorf(path, "set either pool or backend, not both"))
	case m.Pool == "" && m.Backend == "":
		errs = append(errs, FieldErrorf(path, "one of pool or backend is required"))
	case m.Pool != "" && !pools[m.Pool]:
		errs = append(errs, FieldErrorf(path+".pool", "pool %q is not defined in pools", m.Pool))
	case m.Backend != "" && !backends[m.Backend]:
		errs = append(errs, FieldErrorf(path+".backend", "backend %q is not defined in backends", m.Backend))
	}
	errs = append(errs, validateCosts(path+".costs", m.Costs)...)
	var total uint64
	for j, t := range m.Rewrite {
		field := fmt.Sprintf("%s.rewrite[%d]", path, j)
		if t.Model == "" {
			errs = append(errs, FieldErrorf(field+".model", "must not be empty"))
		}
		total += uint64(t.EffectiveWeight())
	}
	if len(m.Rewrite) > 0 && total == 0 {
		errs = append(errs, FieldErrorf(path+".rewrite", "weights must not all be zero"))
	}
	return errs
}

// validateBackendRefs: refs name defined backends, some ref takes
// traffic, and the model's backend (what filters of schema 4 and older
// serve) is one of them.
func validateBackendRefs(path string, m Model, backends map[string]bool) []error {
	if len(m.BackendRefs) == 0 {
		return nil
	}
	var errs []error
	if m.Pool != "" {
		errs = append(errs, FieldErrorf(path+".backend_refs", "a model of a pool cannot have backend_refs"))
	}
	if len(m.BackendRefs) > MaxBackendRefs {
		errs = append(errs, FieldErrorf(path+".backend_refs", "at most %d refs, got %d", MaxBackendRefs, len(m.BackendRefs)))
	}
	var total uint64
	named := false
	for j, r := range m.BackendRefs {
		field := fmt.Sprintf("%s.backend_refs[%d].backend", path, j)
		switch {
		case r.Backend == "":
			errs = append(errs, FieldErrorf(field, "must not be empty"))
		case !backends[r.Backend]:
			errs = append(errs, FieldErrorf(field, "backend %q is not defined in backends", r.Backend))
		}
		named = named || r.Backend == m.Backend
		total += uint64(r.EffectiveWeight())
	}
	if total == 0 {
		errs = append(errs, FieldErrorf(path+".backend_refs", "weights must not all be zero"))
	}
	if m.Backend != "" && !named {
		errs = append(errs, FieldErrorf(path+".backend", "%q must be the backend of one of backend_refs (filters of schema version 4 and older send everything there)", m.Backend))
	}
	return errs
}

// validateCosts compiles each cost (a CEL expression must compile and give
// an integer) and rejects duplicate keys.
func validateCosts(path string, specs []cost.Spec) []error {
	var errs []error
	seen := make(map[string]bool, len(specs))
	for i, s := range specs {
		field := fmt.Sprintf("%s[%d]", path, i)
		if err := s.Check(); err != nil {
			errs = append(errs, FieldErrorf(field, "%v", err))
		} else if seen[s.MetadataKey] {
			errs = append(errs, FieldErrorf(field+".metadata_key", "duplicate %q", s.MetadataKey))
		}
		seen[s.MetadataKey] = true
	}
	return errs
}
