package egrun

import (
	"context"
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
)

// Served is one read of what Envoy Gateway serves a Gateway's proxies.
type Served struct {
	Listeners map[string]*listenerv3.Listener
	Routes    map[string]*routev3.RouteConfiguration
	Clusters  map[string]*clusterv3.Cluster
}

// Fetch subscribes as a proxy of gateway ("namespace/name") over mutual
// TLS and returns the listeners, clusters and the routes they name.
func (eg *EnvoyGateway) Fetch(ctx context.Context, gateway string) (*Served, error) {
	ads, err := xdstest.DialNode(XDSAddr, &corev3.Node{Id: "egrun", Cluster: gateway}, credentials.NewTLS(eg.ClientTLS))
	if err != nil {
		return nil, err
	}
	defer ads.Close()
	out := &Served{Listeners: map[string]*listenerv3.Listener{}, Routes: map[string]*routev3.RouteConfiguration{}, Clusters: map[string]*clusterv3.Cluster{}}
	for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
		if err := ads.Subscribe(typ); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	var routeNames []string
	for got := map[string]bool{}; !got[resource.ClusterType] || !got[resource.ListenerType] || (len(routeNames) > 0 && !got[resource.RouteType]); {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := ads.Next(time.Until(deadline))
		if err != nil {
			return nil, fmt.Errorf("egrun: waiting for Envoy Gateway's xDS: %w", err)
		}
		got[r.GetTypeUrl()] = true
		for _, a := range r.GetResources() {
			var m proto.Message
			switch r.GetTypeUrl() {
			case resource.ClusterType:
				m = &clusterv3.Cluster{}
			case resource.ListenerType:
				m = &listenerv3.Listener{}
			case resource.RouteType:
				m = &routev3.RouteConfiguration{}
			default:
				continue
			}
			if err := a.UnmarshalTo(m); err != nil {
				return nil, err
			}
			switch v := m.(type) {
			case *clusterv3.Cluster:
				out.Clusters[v.GetName()] = v
			case *listenerv3.Listener:
				out.Listeners[v.GetName()] = v
				routeNames = append(routeNames, RDSNames(v)...)
			case *routev3.RouteConfiguration:
				out.Routes[v.GetName()] = v
			}
		}
		if err := ads.ACK(r); err != nil {
			return nil, err
		}
		if r.GetTypeUrl() == resource.ListenerType && len(routeNames) > 0 {
			if err := ads.Subscribe(resource.RouteType, routeNames...); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// RDSNames are the route configurations l's HTTP connection managers take
// over RDS, in its filter chains and default chain.
func RDSNames(l *listenerv3.Listener) []string {
	var names []string
	for _, hcm := range HCMs(l) {
		if n := hcm.GetRds().GetRouteConfigName(); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// HCMs are the HTTP connection managers of l's chains (default included).
func HCMs(l *listenerv3.Listener) []*hcmv3.HttpConnectionManager {
	chains := append([]*listenerv3.FilterChain{}, l.GetFilterChains()...)
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(chains, dc)
	}
	var out []*hcmv3.HttpConnectionManager
	for _, c := range chains {
		for _, f := range c.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if f.GetTypedConfig().MessageIs(hcm) && f.GetTypedConfig().UnmarshalTo(hcm) == nil {
				out = append(out, hcm)
			}
		}
	}
	return out
}
