// Package xdstest is a small xDS client that subscribes the way Envoy does
// (ADS, a node id, ACK with version and nonce), for tests of the control
// plane and for end-to-end tests that take config from it.
package xdstest

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrTimeout means no response arrived in time.
var ErrTimeout = errors.New("xdstest: no response in time")

// ADS is one state-of-the-world ADS stream.
type ADS struct {
	conn   *grpc.ClientConn
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	resps  chan *discoveryv3.DiscoveryResponse
	errc   chan error
	cancel context.CancelFunc
}

// Dial opens a plain-text ADS stream to addr as node nodeID.
func Dial(addr, nodeID string) (*ADS, error) {
	return DialWith(addr, nodeID, insecure.NewCredentials())
}

// DialWith opens an ADS stream over creds (e.g. credentials.NewTLS).
func DialWith(addr, nodeID string, creds credentials.TransportCredentials) (*ADS, error) {
	return DialNode(addr, &corev3.Node{Id: nodeID, Cluster: "inflow-test"}, creds)
}

// DialNode opens an ADS stream over creds as node (Envoy Gateway serves a
// node by its cluster, the Gateway's key).
func DialNode(addr string, node *corev3.Node, creds credentials.TransportCredentials) (*ADS, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("xdstest: dial: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		return nil, errors.Join(fmt.Errorf("xdstest: stream: %w", err), conn.Close())
	}
	a := &ADS{
		conn: conn, stream: stream, cancel: cancel,
		node:  node,
		resps: make(chan *discoveryv3.DiscoveryResponse, 64),
		errc:  make(chan error, 1),
	}
	go a.recv()
	return a, nil
}

func (a *ADS) recv() {
	for {
		r, err := a.stream.Recv()
		if err != nil {
			a.errc <- err
			close(a.resps)
			return
		}
		a.resps <- r
	}
}

// Close ends the stream.
func (a *ADS) Close() error {
	a.cancel()
	return a.conn.Close()
}

// Subscribe asks for typeURL (all resources when names is empty).
func (a *ADS) Subscribe(typeURL string, names ...string) error {
	return a.send(&discoveryv3.DiscoveryRequest{Node: a.node, TypeUrl: typeURL, ResourceNames: names})
}

// ACK accepts resp, as Envoy does after applying it; without it the
// server sends no further updates of that type.
func (a *ADS) ACK(resp *discoveryv3.DiscoveryResponse, names ...string) error {
	return a.send(&discoveryv3.DiscoveryRequest{
		Node: a.node, TypeUrl: resp.GetTypeUrl(), ResourceNames: names,
		VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(),
	})
}

// Send sends a raw request, e.g. a NACK.
func (a *ADS) Send(req *discoveryv3.DiscoveryRequest) error {
	if req.GetNode() == nil {
		req.Node = a.node
	}
	return a.send(req)
}

func (a *ADS) send(req *discoveryv3.DiscoveryRequest) error {
	if err := a.stream.Send(req); err != nil {
		return fmt.Errorf("xdstest: send %s: %w", req.GetTypeUrl(), err)
	}
	return nil
}

// Next returns the next response, waiting at most d.
func (a *ADS) Next(d time.Duration) (*discoveryv3.DiscoveryResponse, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r, ok := <-a.resps:
		if !ok {
			return nil, fmt.Errorf("xdstest: stream ended: %w", <-a.errc)
		}
		return r, nil
	case <-t.C:
		return nil, ErrTimeout
	}
}

// Pending returns a response that has already arrived, or nil.
func (a *ADS) Pending() *discoveryv3.DiscoveryResponse {
	select {
	case r := <-a.resps:
		return r
	default:
		return nil
	}
}
