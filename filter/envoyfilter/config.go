// Package envoyfilter is the Envoy-facing adapter of the Inflow filter: the
// only code that touches the Go filter callbacks. Everything it decides is
// delegated to the request, router and apierror packages.
package envoyfilter

import (
	"fmt"
	"strings"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/router"
	"github.com/inflow-gateway/inflow/filter/split"
)

// pools keeps every pool's endpoints, metrics scrapers and prefix index
// for the life of the process, across config updates.
var pools = pool.NewManager()

// backendHealth keeps the passive health of split models' backends across
// config updates.
var backendHealth = split.NewRegistry()

// filterConfig is one parsed plugin_config.
type filterConfig struct {
	router   *router.Router
	metrics  *metrics
	exporter *exporter
	tokens   tokenTable
	// releaseGenAI gives back the GenAI metrics listener, if any.
	releaseGenAI func()
	// merged configs share their child's router; only the parsed config
	// that owns it releases it.
	merged bool
	// routePool is the pool of the route this merged config belongs to
	// (config.RouteConfig), "" when the route is not bound to one.
	routePool string
}

// routeBinding is a parsed per-route config.RouteConfig: it is merged over
// the listener's config, never used alone.
type routeBinding struct{ pool string }

// Destroy implements api.Config: Envoy dropped this config, so stop its
// stats export and release its pools (scrapers of pools no config still
// holds stop).
func (c *filterConfig) Destroy() {
	if c.merged {
		return
	}
	c.exporter.Stop()
	c.router.Close()
	if c.releaseGenAI != nil {
		c.releaseGenAI()
	}
}

// Parser implements api.StreamFilterConfigParser.
type Parser struct{}

var _ api.StreamFilterConfigParser = Parser{}

// Parse validates the plugin_config; an error makes Envoy reject the
// listener instead of serving with a wrong config.
func (Parser) Parse(a *anypb.Any, callbacks api.ConfigCallbackHandler) (interface{}, error) {
	if config.IsRouteConfig(a) {
		rc, err := config.RouteFromAny(a)
		if err != nil {
			return nil, err
		}
		return &routeBinding{pool: rc.Pool}, nil
	}
	cfg, err := config.FromAny(a)
	if err != nil {
		return nil, err
	}
	if ignored := cfg.Ignored(); len(ignored) > 0 {
		// A control plane upgraded before this Envoy: serve what this
		// version knows, and say what it cannot.
		api.LogWarnf("inflow: the filter config is schema version %d, this filter reads up to %d; ignoring fields it does not know: %s",
			cfg.Version, config.SchemaVersion, strings.Join(ignored, ", "))
	}
	r, err := router.New(cfg, pools, backendHealth)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	names := make([]string, len(cfg.Models))
	for i, m := range cfg.Models {
		names[i] = m.Name
	}
	tokens := newTokenTable(names)
	fc := &filterConfig{
		router:   r,
		metrics:  defineMetrics(callbacks),
		tokens:   tokens,
		exporter: startExporter(r, definePoolStats(callbacks, r), defineTokenStats(callbacks, tokens)),
	}
	// Route configs (no callbacks) are merged into a listener's, which
	// serves the metrics.
	if a := cfg.GenAIMetrics.Address; a != "" && callbacks != nil {
		fc.releaseGenAI = genaiServers.Retain(a)
	}
	return fc, nil
}

// Merge lets a per-route config replace the listener's one whole, keeping
// the listener's metrics when the route config has none (route configs are
// parsed without callbacks), or binds the listener's config to a route's
// pool. Envoy merges again whenever the listener's config changes, so a
// binding always uses the current pools.
func (Parser) Merge(parent, child interface{}) interface{} {
	p, _ := parent.(*filterConfig)
	if b, ok := child.(*routeBinding); ok {
		if p == nil {
			return parent // no listener config to bind: Factory refuses it
		}
		return &filterConfig{router: p.router, metrics: p.metrics, exporter: p.exporter, merged: true, routePool: b.pool}
	}
	c, ok := child.(*filterConfig)
	if !ok {
		return parent
	}
	if p != nil && c.metrics.undefined() {
		return &filterConfig{router: c.router, metrics: p.metrics, tokens: c.tokens, merged: true}
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
