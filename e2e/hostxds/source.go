package hostxds

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
)

// Bootstrap is a static cluster of the node's bootstrap that config
// sources may name (Envoy Gateway's proxies reach Inflow's xDS server
// through one: its EnvoyProxy merges "inflow-xds" into their bootstrap).
type Bootstrap struct {
	// Addr is the cluster's one endpoint (host:port).
	Addr string
	// DialOptions replace the plain-text dial (the cluster's transport socket).
	DialOptions []grpc.DialOption
}

// configSource returns where a config source's resources come from: ""
// for ADS, or the bootstrap cluster of a delta gRPC api_config_source.
// Which clusters exist is checked when the state is translated.
func configSource(cs *corev3.ConfigSource, path string) (string, error) {
	if cs.GetAds() != nil {
		return "", nil
	}
	api := cs.GetApiConfigSource()
	if api == nil {
		return "", fmt.Errorf("%w: %s: only ads or api_config_source", ErrNotModelled, path)
	}
	// SotW GRPC over a non-ADS stream, REST and AGGREGATED_* are other
	// muxes envoyhost does not have.
	if api.GetApiType() != corev3.ApiConfigSource_DELTA_GRPC {
		return "", fmt.Errorf("%w: %s.api_config_source.api_type %s: only DELTA_GRPC", ErrNotModelled, path, api.GetApiType())
	}
	if api.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		return "", fmt.Errorf("%s.api_config_source.transport_api_version: only V3", path)
	}
	// Envoy uses the first gRPC service (Utility::factoryForGrpcApiConfigSource
	// refuses more than one: source/common/config/utility.cc).
	gs := api.GetGrpcServices()
	if len(gs) != 1 || gs[0].GetEnvoyGrpc().GetClusterName() == "" {
		return "", fmt.Errorf("%w: %s.api_config_source.grpc_services: exactly one envoy_grpc service", ErrNotModelled, path)
	}
	return gs[0].GetEnvoyGrpc().GetClusterName(), nil
}

// checkBootstrapCluster refuses a config source through a cluster that is
// not a static cluster of the bootstrap, as Envoy does: "must have a
// statically defined non-EDS cluster" (source/common/config/utility.cc:124-135,
// primary clusters are the bootstrap's, cluster_manager_impl.cc:376-388).
func checkBootstrapCluster(boot map[string]Bootstrap, source, what string) error {
	if source == "" {
		return nil
	}
	if _, ok := boot[source]; !ok {
		return fmt.Errorf("%s must have a statically defined non-EDS cluster: '%s' does not exist, was added via api, or is an EDS cluster", what, source)
	}
	return nil
}

// subKey is one subscription: a type through a source ("" = ADS).
type subKey struct{ source, typ string }

// deltaStream is one delta xDS stream to a bootstrap cluster for one type,
// on the type's own service (DeltaEndpoints, DeltaExtensionConfigs), as an
// api_config_source that is not ADS opens one
// (source/common/config/type_to_endpoint.cc deltaGrpcMethod).
type deltaStream struct {
	key    subKey
	send   func(*discoveryv3.DeltaDiscoveryRequest) error
	recv   func() (*discoveryv3.DeltaDiscoveryResponse, error)
	conn   *grpc.ClientConn
	names  []string
	noded  bool // node sent: set_node_on_first_message_only is what Envoy Gateway asks
	cancel context.CancelFunc
}

type deltaResponse struct {
	key subKey
	r   *discoveryv3.DeltaDiscoveryResponse
	err error
}

func openDelta(ctx context.Context, key subKey, b Bootstrap, out chan<- deltaResponse) (*deltaStream, error) {
	conn, err := grpc.NewClient(b.Addr, b.DialOptions...)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	d := &deltaStream{key: key, conn: conn, cancel: cancel}
	switch key.typ {
	case resource.EndpointType:
		s, err := endpointservice.NewEndpointDiscoveryServiceClient(conn).DeltaEndpoints(sctx)
		if err != nil {
			d.close()
			return nil, err
		}
		d.send, d.recv = s.Send, s.Recv
	case resource.ExtensionConfigType:
		s, err := extensionservice.NewExtensionConfigDiscoveryServiceClient(conn).DeltaExtensionConfigs(sctx)
		if err != nil {
			d.close()
			return nil, err
		}
		d.send, d.recv = s.Send, s.Recv
	default:
		d.close()
		return nil, fmt.Errorf("%w: %s through cluster %s", ErrNotModelled, key.typ, key.source)
	}
	go func() {
		for {
			r, err := d.recv()
			select {
			case out <- deltaResponse{key: key, r: r, err: err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return d, nil
}

func (d *deltaStream) close() {
	d.cancel()
	d.conn.Close()
}

// request sends one delta request; the node goes on the first only.
func (d *deltaStream) request(node *corev3.Node, r *discoveryv3.DeltaDiscoveryRequest) error {
	r.TypeUrl = d.key.typ
	if !d.noded {
		r.Node, d.noded = node, true
	}
	if err := d.send(r); err != nil {
		return fmt.Errorf("hostxds: delta %s through %s: %w", d.key.typ, d.key.source, err)
	}
	return nil
}

// resubscribe sends the names added and removed since the last request
// (DeltaSubscriptionState::getNextRequestAckless: resource_names_subscribe
// and _unsubscribe carry the change, not the set).
func (d *deltaStream) resubscribe(node *corev3.Node, names []string) error {
	var add, drop []string
	for _, n := range names {
		if !contains(d.names, n) {
			add = append(add, n)
		}
	}
	for _, n := range d.names {
		if !contains(names, n) {
			drop = append(drop, n)
		}
	}
	if len(add) == 0 && len(drop) == 0 {
		return nil
	}
	d.names = names
	return d.request(node, &discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: drop})
}
