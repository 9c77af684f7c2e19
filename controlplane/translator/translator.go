// Package translator turns the control plane's configuration into Envoy
// xDS resources. It is pure: config in, resources out, no I/O, so the same
// input always gives the same output (golden-tested in testdata/).
//
// Per listener: a Listener whose HTTP connection manager runs the Inflow
// golang filter then the router, with routes from RDS. Per listener a
// RouteConfiguration matching x-ai-eg-model exactly per model. Per pool an
// ORIGINAL_DST cluster the filter steers with x-gateway-destination-endpoint;
// per external backend a LOGICAL_DNS cluster, over TLS for https.
package translator

import (
	"errors"
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/filter/config"
)

// ErrTranslate marks a config that validated but could not be turned into
// valid Envoy resources: a bug or a gap in validation, never a user typo.
var ErrTranslate = errors.New("translate")

// Resources is one complete, consistent set of xDS resources.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
}

// ByType is the form go-control-plane's snapshot takes.
func (r *Resources) ByType() map[resource.Type][]types.Resource {
	m := map[resource.Type][]types.Resource{
		resource.ListenerType: make([]types.Resource, 0, len(r.Listeners)),
		resource.RouteType:    make([]types.Resource, 0, len(r.Routes)),
		resource.ClusterType:  make([]types.Resource, 0, len(r.Clusters)),
	}
	for _, l := range r.Listeners {
		m[resource.ListenerType] = append(m[resource.ListenerType], l)
	}
	for _, rc := range r.Routes {
		m[resource.RouteType] = append(m[resource.RouteType], rc)
	}
	for _, c := range r.Clusters {
		m[resource.ClusterType] = append(m[resource.ClusterType], c)
	}
	return m
}

// validator is what every generated resource implements (protoc-gen-validate).
type validator interface{ ValidateAll() error }

// check validates a resource as it is added, so a bad one is reported
// where it was built rather than as a NACK from Envoy.
func check(kind, name string, v validator) error {
	if err := v.ValidateAll(); err != nil {
		return fmt.Errorf("%w: %s %q: %w", ErrTranslate, kind, name, err)
	}
	return nil
}

// Translate builds the resources for c, validating it first so every
// source (the file today, Kubernetes later) gets the same checks. API keys
// are read from Backend.APIKeyValue.
func Translate(c *spec.Config) (*Resources, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	fc := c.FilterConfig()
	pluginConfig, err := config.ToAny(fc)
	if err != nil {
		return nil, fmt.Errorf("%w: plugin config: %w", ErrTranslate, err)
	}
	// Refuse what the filter itself would refuse: same parser, same code.
	if _, err := config.FromAny(pluginConfig); err != nil {
		return nil, fmt.Errorf("%w: the filter rejects its config: %w", ErrTranslate, err)
	}
	bufferLimit := uint32(fc.Limits.EffectiveMaxRequestBodyBytes() + bufferHeadroom)

	var out Resources
	for _, l := range c.Listeners {
		lis, err := makeListener(l, c.Filter.EffectiveLibraryPath(), pluginConfig, bufferLimit)
		if err != nil {
			return nil, err
		}
		if err := check("listener", l.Name, lis); err != nil {
			return nil, err
		}
		out.Listeners = append(out.Listeners, lis)

		rc, err := makeRouteConfig(l, c)
		if err != nil {
			return nil, err
		}
		if err := check("route configuration", rc.GetName(), rc); err != nil {
			return nil, err
		}
		out.Routes = append(out.Routes, rc)
	}
	for _, p := range c.Pools {
		cl := makePoolCluster(p.Name, bufferLimit)
		if err := check("cluster", cl.GetName(), cl); err != nil {
			return nil, err
		}
		out.Clusters = append(out.Clusters, cl)
	}
	for _, b := range c.Backends {
		cl, err := makeBackendCluster(b, bufferLimit)
		if err != nil {
			return nil, err
		}
		if err := check("cluster", cl.GetName(), cl); err != nil {
			return nil, err
		}
		out.Clusters = append(out.Clusters, cl)
	}
	return &out, nil
}

// PoolClusterName and BackendClusterName keep pools and backends in
// separate namespaces so a pool and a backend may share a name.
func PoolClusterName(pool string) string { return "pool/" + pool }

// BackendClusterName is the cluster of an external backend.
func BackendClusterName(backend string) string { return "backend/" + backend }

// RouteConfigName is the RDS name of a listener's routes.
func RouteConfigName(listener string) string { return listener }
