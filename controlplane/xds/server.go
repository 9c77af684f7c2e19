// Package xds serves translated resources to Envoy over ADS, in both the
// state-of-the-world and the delta protocol, from go-control-plane's
// snapshot cache, in plain text or requiring mutual TLS.
package xds

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/translator"
)

// ErrSnapshot marks resources that could not be served (inconsistent
// references, or the cache refused them). The previous snapshot stays.
var ErrSnapshot = errors.New("xds snapshot")

// gRPC limits, sized for a few Envoys each holding one ADS stream.
const (
	// keepaliveTime pings a quiet connection so a vanished Envoy (or a
	// NAT/conntrack entry dropped while idle) is noticed.
	keepaliveTime = 30 * time.Second
	// keepaliveTimeout is how long a ping may go unanswered.
	keepaliveTimeout = 5 * time.Second
	// keepaliveMinTime is the fastest client ping rate tolerated; it is
	// below the 30 s interval envoy.yaml sets on xds_cluster so Envoy is
	// never sent GOAWAY(too_many_pings).
	keepaliveMinTime = 15 * time.Second
	// maxConcurrentStreams: an Envoy uses one ADS stream, or one per type
	// without ADS; this leaves room for many Envoys behind one connection.
	maxConcurrentStreams = 1000
)

// nodeKey is the one snapshot-cache key every node maps to: all Envoys of
// this gateway get the same configuration whatever their node id.
const nodeKey = "inflow"

type allNodes struct{}

func (allNodes) ID(*corev3.Node) string { return nodeKey }

// Server publishes snapshots and serves them over gRPC.
type Server struct {
	cache   cachev3.SnapshotCache
	retry   *retryCache
	xds     serverv3.Server
	log     *slog.Logger
	metrics *admin.Metrics

	mu      sync.Mutex
	version uint64
	digest  [sha256.Size]byte
}

// Option changes a Server's defaults.
type Option func(*options)

type options struct{ nack backoff }

// WithNACKBackoff sets how long a refused update waits before it is sent
// again (base, doubling per consecutive refusal up to max; nack.go).
func WithNACKBackoff(base, max time.Duration) Option {
	return func(o *options) { o.nack = backoff{base: base, max: max} }
}

// New creates a server with no snapshot: Envoys that connect before the
// first Publish wait for it.
func New(ctx context.Context, log *slog.Logger, m *admin.Metrics, opts ...Option) *Server {
	o := options{nack: backoff{base: DefaultNACKBackoff, max: defaultNACKBackoffMax}}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{log: log, metrics: m}
	s.cache = cachev3.NewSnapshotCache(true, allNodes{}, cacheLogger(log))
	s.retry = newRetryCache(s.cache, o.nack, log)
	// Ordered ADS sends each snapshot's types in go-control-plane's ADS
	// order (CDS, EDS, LDS, RDS, ..., ECDS last), so a new model's route is
	// in place before the filter config that lists it: out of order, a model
	// could show in /v1/models and 404 (no route) for a moment.
	s.xds = serverv3.NewServer(ctx, s.retry, s.callbacks(), sotw.WithOrderedADS())
	return s
}

// Publish serves res as the next version. Resources equal to the current
// ones are not re-sent: the version only moves when Envoy has something
// new, and it only ever increases.
func (s *Server) Publish(ctx context.Context, res *translator.Resources) (version uint64, changed bool, err error) {
	digest, err := digestOf(res)
	if err != nil {
		return 0, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version > 0 && digest == s.digest {
		return s.version, false, nil
	}
	next := s.version + 1
	snap, err := cachev3.NewSnapshot(strconv.FormatUint(next, 10), res.ByType())
	if err != nil {
		return 0, false, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	if err := snap.Consistent(); err != nil {
		return 0, false, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	// Consistent checks RDS and EDS names only.
	if err := res.CheckExtensionReferences(); err != nil {
		return 0, false, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	if err := s.cache.SetSnapshot(ctx, nodeKey, snap); err != nil {
		return 0, false, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	s.version, s.digest = next, digest
	s.metrics.Snapshot(next, admin.ResourceCounts{
		Listeners: len(res.Listeners), Routes: len(res.Routes), Clusters: len(res.Clusters),
		Endpoints: len(res.Endpoints), Extensions: len(res.Extensions),
	})
	return next, true, nil
}

// Version is the version being served, 0 before the first Publish.
func (s *Server) Version() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

func digestOf(res *translator.Resources) ([sha256.Size]byte, error) {
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	var d [sha256.Size]byte
	byType := res.ByType()
	for _, typ := range resourceTypes {
		h.Write([]byte(typ))
		for _, m := range byType[typ] {
			b, err := opts.Marshal(m)
			if err != nil {
				return d, fmt.Errorf("%w: %w", ErrSnapshot, err)
			}
			h.Write([]byte(strconv.Itoa(len(b))))
			h.Write(b)
		}
	}
	h.Sum(d[:0])
	return d, nil
}

// resourceTypes are the types a snapshot holds, in a fixed order.
var resourceTypes = []string{
	resource.ListenerType, resource.ExtensionConfigType, resource.RouteType,
	resource.ClusterType, resource.EndpointType,
}

// Serve answers xDS on lis in plain text until ctx ends. Anyone who
// reaches lis gets the configuration (which holds no credentials: API
// keys stay in Envoy's secret files); ServeMTLS admits only clients with a
// certificate.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	return s.serve(ctx, lis)
}

// ServeMTLS answers xDS on lis over TLS, requiring a client certificate
// that chains to files.ClientCAFile. The files are re-read when they
// change, so rotated certificates apply to new connections.
func (s *Server) ServeMTLS(ctx context.Context, lis net.Listener, files MTLSFiles) error {
	cfg, err := files.ServerConfig(s.log)
	if err != nil {
		return err
	}
	return s.serve(ctx, lis, grpc.Creds(credentials.NewTLS(cfg)))
}

// serve runs until ctx ends. ADS streams never finish on their own, so
// shutdown stops the server at once; Envoy reconnects.
func (s *Server) serve(ctx context.Context, lis net.Listener, opts ...grpc.ServerOption) error {
	g := grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
	}, opts...)...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	// The per-type services let a client without ADS subscribe too.
	listenerservice.RegisterListenerDiscoveryServiceServer(g, s.xds)
	routeservice.RegisterRouteDiscoveryServiceServer(g, s.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, s.xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, s.xds)
	extensionservice.RegisterExtensionConfigDiscoveryServiceServer(g, s.xds)

	stop := context.AfterFunc(ctx, g.Stop)
	defer stop()
	if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("xds: serve: %w", err)
	}
	return nil
}
