package harness

import (
	"context"
	"errors"
	"net"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
)

// ADS is an xDS server of hand-built resources (go-control-plane's snapshot
// cache over ADS), for tests of the host's own xDS handling: resource shapes
// the control plane does not emit (yet), refusals, warming, updates.
type ADS struct {
	// Addr is the ADS listener's ip:port (XDSHostOptions.ControlPlane).
	Addr  string
	cache cachev3.SnapshotCache
	grpc  *grpc.Server
	nacks chan *discoveryv3.DiscoveryRequest
}

type oneNode struct{}

func (oneNode) ID(*corev3.Node) string { return "all" }

// StartADS serves on a free loopback port until Close.
func StartADS(ctx context.Context) (*ADS, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &ADS{Addr: lis.Addr().String(), cache: cachev3.NewSnapshotCache(true, oneNode{}, nil),
		grpc: grpc.NewServer(), nacks: make(chan *discoveryv3.DiscoveryRequest, 64)}
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
		if r.GetErrorDetail() != nil {
			select {
			case a.nacks <- r:
			default:
			}
		}
		return nil
	}}
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(a.grpc, serverv3.NewServer(ctx, a.cache, cb))
	go func() { _ = a.grpc.Serve(lis) }()
	return a, nil
}

// Set serves res as version: every node gets it on its open streams.
func (a *ADS) Set(ctx context.Context, version string, res map[resource.Type][]types.Resource) error {
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		return err
	}
	return a.cache.SetSnapshot(ctx, "all", snap)
}

// NACK returns the next NACK a node sent, or ctx's error.
func (a *ADS) NACK(ctx context.Context) (*discoveryv3.DiscoveryRequest, error) {
	select {
	case r := <-a.nacks:
		return r, nil
	case <-ctx.Done():
		return nil, errors.Join(errors.New("no NACK"), ctx.Err())
	}
}

// Close stops the server.
func (a *ADS) Close() { a.grpc.Stop() }
