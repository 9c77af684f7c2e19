// Package envoygateway is Envoy Gateway's extension server for Inflow: it
// replaces the Envoy AI Gateway controller's extension server. Envoy
// Gateway calls it while translating Gateways and routes; it
//
//   - puts the Inflow filter into every Gateway HTTP listener, right before
//     the router, taking its config over ECDS from Inflow's control plane
//     (through a static cluster of the proxies' bootstrap), so pool churn
//     never changes a resource Envoy Gateway serves (PostHTTPListenerModify);
//   - binds each route to an InferencePool to that pool, so the filter picks
//     in it for any model, and lets the route retry on the picker's
//     fallbacks (PostRouteModify);
//   - makes each InferencePool cluster Inflow's pool destination: members
//     over EDS from Inflow with OverrideHost, or ORIGINAL_DST; no ext_proc
//     and no Endpoint Picker (PostClusterModify), and keeps Envoy
//     Gateway's own load assignment for it subscribed (PostTranslateModify).
//
// Everything else it returns unchanged (an empty response, which Envoy
// Gateway reads as "not modified"). The hooks are pure functions of their
// input and the current spec; the shapes come from the translator, shared
// with Inflow's own Envoys.
package envoygateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

	extension "github.com/envoyproxy/gateway/proto/extension"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/filter/config"
)

// Hooks are the post-translation hooks the server implements, as Envoy
// Gateway's config names them (extensionManager.hooks.xdsTranslator.post).
// Translation (PostTranslateModify) only adds the assignment holds; the
// cluster Inflow's config comes through must be a static one of the
// proxies' bootstrap, which no hook can add.
var Hooks = []string{"Route", "Cluster", "HTTPListener", "Translation"}

// DefaultPort is where Envoy Gateway's documentation puts extension servers.
const DefaultPort = 1063

// ErrConfig marks a spec the extension server cannot serve.
var ErrConfig = errors.New("envoy gateway extension")

// Server answers Envoy Gateway's EnvoyGatewayExtension hooks.
type Server struct {
	extension.UnimplementedEnvoyGatewayExtensionServer
	log   *slog.Logger
	state atomic.Pointer[state]
}

// state is what the hooks need from one spec, built once per spec so a
// hook only copies it.
type state struct {
	xdsCluster  string
	bufferLimit uint32
	filter      *hcmv3.HttpFilter
	replies     *hcmv3.LocalReplyConfig
	pools       map[string]config.Pool
	// bindings are the spec's pools' route bindings, made once.
	bindings map[string]*anypb.Any
}

// New serves c, which must have an envoy_gateway section.
func New(c *spec.Config, log *slog.Logger) (*Server, error) {
	s := &Server{log: log}
	if err := s.Update(c); err != nil {
		return nil, err
	}
	return s, nil
}

// Update makes later hook calls use c. Envoy Gateway only calls the hooks
// when it translates, so what changes with c (a pool's destination or
// fallbacks, the body limit) reaches its proxies at its next translation;
// what changes with pods never needs one (ECDS and EDS carry it).
func (s *Server) Update(c *spec.Config) error {
	if c.EnvoyGateway == nil {
		return fmt.Errorf("%w: the config has no envoy_gateway section", ErrConfig)
	}
	cluster := c.EnvoyGateway.EffectiveXDSCluster()
	replies, err := translator.LocalReplyConfig(translator.InferenceReplies())
	if err != nil {
		return err
	}
	st := &state{
		xdsCluster:  cluster,
		bufferLimit: translator.BufferLimit(c.FilterConfig()),
		filter:      translator.FilterFromECDS(translator.ClusterConfigSource(cluster)),
		replies:     replies,
		pools:       make(map[string]config.Pool, len(c.Pools)),
		bindings:    make(map[string]*anypb.Any, len(c.Pools)),
	}
	for _, p := range c.Pools {
		st.pools[p.Name] = p
		if st.bindings[p.Name], err = translator.RouteBinding(p.Name); err != nil {
			return err
		}
	}
	s.state.Store(st)
	return nil
}

// pool is the spec's pool of that name, or one with the filter's defaults
// when the spec does not hold it (yet): the route and cluster are made
// now, and its members and filter config arrive when the spec has it.
func (st *state) pool(name string) config.Pool {
	if p, ok := st.pools[name]; ok {
		return p
	}
	return config.Pool{Name: name}
}

// binding is the route binding to pool (shared: callers must not modify it).
func (st *state) binding(pool string) (*anypb.Any, error) {
	if b, ok := st.bindings[pool]; ok {
		return b, nil
	}
	return translator.RouteBinding(pool)
}

// Serve answers the hooks on lis until ctx ends. Envoy Gateway dials it
// (extensionManager.service); opts may add TLS.
func (s *Server) Serve(ctx context.Context, lis net.Listener, opts ...grpc.ServerOption) error {
	g := grpc.NewServer(opts...)
	extension.RegisterEnvoyGatewayExtensionServer(g, s)
	stop := context.AfterFunc(ctx, g.GracefulStop)
	defer stop()
	if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("envoy gateway extension: serve: %w", err)
	}
	return nil
}
