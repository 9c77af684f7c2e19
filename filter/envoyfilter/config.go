// Package envoyfilter is the Envoy-facing adapter of the Inflow filter: the
// only code that touches the Go filter callbacks. Everything it decides is
// delegated to the request, router and apierror packages.
package envoyfilter

import (
	"fmt"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/router"
)

// Name is the plugin_name Envoy's golang filter config must use.
const Name = "inflow"

// registry keeps endpoint state (in-flight counts) across config updates
// for the life of the process.
var registry = pool.NewRegistry()

// filterConfig is one parsed plugin_config.
type filterConfig struct {
	router  *router.Router
	metrics *metrics
}

// Destroy implements api.Config; nothing is held outside the GC yet.
func (c *filterConfig) Destroy() {}

// Parser implements api.StreamFilterConfigParser.
type Parser struct{}

var _ api.StreamFilterConfigParser = Parser{}

// Parse validates the plugin_config; an error makes Envoy reject the
// listener instead of serving with a wrong config.
func (Parser) Parse(a *anypb.Any, callbacks api.ConfigCallbackHandler) (interface{}, error) {
	cfg, err := config.FromAny(a)
	if err != nil {
		return nil, err
	}
	r, err := router.New(cfg, registry)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &filterConfig{router: r, metrics: defineMetrics(callbacks)}, nil
}

// Merge lets a per-route config replace the listener's one whole, keeping
// the listener's metrics when the route config has none (route configs are
// parsed without callbacks).
func (Parser) Merge(parent, child interface{}) interface{} {
	p, _ := parent.(*filterConfig)
	c, ok := child.(*filterConfig)
	if !ok {
		return parent
	}
	if p != nil && c.metrics.undefined() {
		merged := *c
		merged.metrics = p.metrics
		return &merged
	}
	return c
}

// Factory implements api.StreamFilterFactory.
func Factory(c interface{}, callbacks api.FilterCallbackHandler) api.StreamFilter {
	cfg, ok := c.(*filterConfig)
	if !ok {
		panic(fmt.Sprintf("inflow: unexpected config type %T", c))
	}
	return &filter{cfg: cfg, callbacks: callbacks}
}
