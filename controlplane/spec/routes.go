package spec

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/inflow-gateway/inflow/filter/config"
)

// ModelRoute is what Envoy's routes do for one model beyond what the
// filter decides: on which hostnames it is served and how long a request
// may take. The filter never sees it.
type ModelRoute struct {
	// Hostnames serve the model only for these Host/:authority values,
	// within each listener's own hostnames (Gateway API's intersection of
	// a route's and a listener's hostnames: a listener none of them fits
	// does not serve the model). Written as listeners' hostnames are.
	// Empty: every hostname of every listener.
	Hostnames []string `json:"hostnames,omitempty"`
	// Timeout bounds a whole request, the response streamed to its end
	// (Envoy's route timeout: 504 after it), e.g. "60s". Unset or "0s":
	// none, so long generations are never cut.
	Timeout string `json:"timeout,omitempty"`
}

// RouteOf is the route settings of model (zero when it has none).
func (c *Config) RouteOf(model string) ModelRoute { return c.ModelRoutes[model] }

// EffectiveTimeout is the route timeout: 0 means none.
func (r ModelRoute) EffectiveTimeout() time.Duration {
	d, _ := time.ParseDuration(r.Timeout) // validated
	return d
}

func validateModelRoutes(c *Config) []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.ModelRoutes)) {
		r := c.ModelRoutes[name]
		p := fmt.Sprintf("model_routes[%q]", name)
		if !slices.ContainsFunc(c.Models, func(m config.Model) bool { return m.Name == name }) {
			errs = append(errs, config.FieldErrorf(p, "no model %q in models", name))
		}
		errs = append(errs, validateHostnames(p+".hostnames", r.Hostnames)...)
		if r.Timeout != "" {
			if d, err := time.ParseDuration(r.Timeout); err != nil || d < 0 {
				errs = append(errs, config.FieldErrorf(p+".timeout", "%q is not a duration >= 0 (e.g. 60s)", r.Timeout))
			}
		}
	}
	return errs
}
