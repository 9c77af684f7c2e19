// Package translator turns the control plane's configuration into Envoy
// xDS resources. It is pure: config in, resources out, no I/O, so the same
// input always gives the same output (golden-tested in testdata/).
//
// Per listener: a Listener whose HTTP connection manager runs the Inflow
// golang filter, its config taken over ECDS, then the router, with routes
// from RDS and Envoy's own error replies mapped to OpenAI's error shape.
// One ECDS resource carries the filter config (models, pools, endpoints,
// objectives), so editing those never touches a listener and never drains
// a connection. Per listener a RouteConfiguration matching x-ai-eg-model
// exactly per model. Per pool a cluster of its destination mode: EDS with
// Envoy's OverrideHost policy walking the filter's fallback list (served
// with a ClusterLoadAssignment of the pool's endpoints), or ORIGINAL_DST.
// Per external backend a LOGICAL_DNS cluster, over TLS for https, whose API
// key Envoy injects from a secret file it reads itself.
package translator

import (
	"errors"
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
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
	// Endpoints are the members of the EDS (override_host) pool clusters.
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Extensions are the ECDS resources the listeners' filters reference:
	// the one Inflow filter config.
	Extensions []*corev3.TypedExtensionConfig
	// ForEnvoyGateway: Envoy Gateway's proxies take the filter config and
	// pool members from this set too (spec.EnvoyGateway), through listeners
	// and clusters Envoy Gateway serves them.
	ForEnvoyGateway bool
}

// ByType is the form go-control-plane's snapshot takes.
func (r *Resources) ByType() map[resource.Type][]types.Resource {
	return map[resource.Type][]types.Resource{
		resource.ListenerType:        asResources(r.Listeners),
		resource.RouteType:           asResources(r.Routes),
		resource.ClusterType:         asResources(r.Clusters),
		resource.EndpointType:        asResources(r.Endpoints),
		resource.ExtensionConfigType: asResources(r.Extensions),
	}
}

func asResources[T types.Resource](in []T) []types.Resource {
	out := make([]types.Resource, 0, len(in))
	for _, r := range in {
		out = append(out, r)
	}
	return out
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
// source (the file today, Kubernetes later) gets the same checks.
func Translate(c *spec.Config) (*Resources, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	fc := c.FilterConfig()
	filter, err := makeFilterExtension(fc, c.Filter.EffectiveLibraryPath())
	if err != nil {
		return nil, fmt.Errorf("%w: plugin config: %w", ErrTranslate, err)
	}
	bufferLimit := BufferLimit(fc)
	out := Resources{Extensions: []*corev3.TypedExtensionConfig{filter}, ForEnvoyGateway: c.EnvoyGateway != nil}

	for _, l := range c.Listeners {
		lis, err := makeListener(l, c.AccessLog, bufferLimit)
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
		cl, err := makePoolCluster(p, bufferLimit)
		if err != nil {
			return nil, err
		}
		if err := check("cluster", cl.GetName(), cl); err != nil {
			return nil, err
		}
		out.Clusters = append(out.Clusters, cl)
		if p.Destination.Effective() != config.DestinationOverrideHost {
			continue
		}
		cla, err := makePoolEndpoints(p)
		if err != nil {
			return nil, err
		}
		if err := check("cluster load assignment", cla.GetClusterName(), cla); err != nil {
			return nil, err
		}
		out.Endpoints = append(out.Endpoints, cla)
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

// BufferLimit is the per-connection buffer a listener or cluster carrying
// the filter's requests needs: the filter buffers whole bodies
// (StopAndBuffer), so a smaller buffer makes Envoy answer 413 before the
// filter has seen the body.
func BufferLimit(fc *config.Config) uint32 {
	return uint32(fc.Limits.EffectiveMaxRequestBodyBytes() + bufferHeadroom)
}

// PoolClusterName and BackendClusterName keep pools and backends in
// separate namespaces so a pool and a backend may share a name. A pool's
// ClusterLoadAssignment has its cluster's name.
func PoolClusterName(pool string) string { return "pool/" + pool }

// BackendClusterName is the cluster of an external backend.
func BackendClusterName(backend string) string { return "backend/" + backend }

// RouteConfigName is the RDS name of a listener's routes.
func RouteConfigName(listener string) string { return listener }
