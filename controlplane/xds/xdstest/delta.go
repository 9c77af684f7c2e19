package xdstest

import (
	"context"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// DeltaFetch subscribes to names of typeURL (EDS or ECDS) over its own
// delta stream, as an Envoy Gateway proxy does through the control plane's
// cluster (not ADS), and returns the first response's resources by name.
func DeltaFetch(ctx context.Context, addr string, node *corev3.Node, typeURL string, names ...string) (map[string]*discoveryv3.Resource, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	type deltaStream interface {
		Send(*discoveryv3.DeltaDiscoveryRequest) error
		Recv() (*discoveryv3.DeltaDiscoveryResponse, error)
	}
	var s deltaStream
	switch typeURL {
	case resource.EndpointType:
		s, err = endpointservice.NewEndpointDiscoveryServiceClient(conn).DeltaEndpoints(ctx)
	case resource.ExtensionConfigType:
		s, err = extensionservice.NewExtensionConfigDiscoveryServiceClient(conn).DeltaExtensionConfigs(ctx)
	default:
		return nil, fmt.Errorf("xdstest: no delta service for %s", typeURL)
	}
	if err != nil {
		return nil, err
	}
	if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNamesSubscribe: names}); err != nil {
		return nil, err
	}
	r, err := s.Recv()
	if err != nil {
		return nil, fmt.Errorf("xdstest: delta %s: %w", typeURL, err)
	}
	out := map[string]*discoveryv3.Resource{}
	for _, res := range r.GetResources() {
		out[res.GetName()] = res
	}
	return out, nil
}
