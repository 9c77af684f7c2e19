package xdstest

import (
	"fmt"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/inflow-gateway/inflow/controlplane/translator"
)

// State is what an Envoy following the stream would hold, by type.
type State struct {
	Versions   map[string]string // type URL -> last accepted version
	Listeners  map[string]*listenerv3.Listener
	Routes     map[string]*routev3.RouteConfiguration
	Clusters   map[string]*clusterv3.Cluster
	Endpoints  map[string]*endpointv3.ClusterLoadAssignment
	Extensions map[string]*corev3.TypedExtensionConfig
	// Responses counts responses received per type URL.
	Responses map[string]int

	// named are the subscriptions Envoy makes by resource name (RDS, EDS,
	// ECDS), derived from the listeners and clusters it holds.
	named map[string]*subscription
}

type subscription struct {
	names          []string
	nonce, version string
}

// Envoy is an ADS client that behaves like Envoy: it subscribes to CDS and
// LDS, then by name to the routes (RDS) and filter configs (ECDS) its
// listeners use and the endpoints (EDS) of its EDS clusters, and ACKs
// everything it decodes.
type Envoy struct {
	*ADS
	State State
}

// Connect dials addr in plain text and subscribes as nodeID.
func Connect(addr, nodeID string) (*Envoy, error) {
	a, err := Dial(addr, nodeID)
	if err != nil {
		return nil, err
	}
	return Follow(a)
}

// Follow subscribes on an open stream the way Envoy does.
func Follow(a *ADS) (*Envoy, error) {
	e := &Envoy{ADS: a, State: State{
		Versions:   map[string]string{},
		Listeners:  map[string]*listenerv3.Listener{},
		Routes:     map[string]*routev3.RouteConfiguration{},
		Clusters:   map[string]*clusterv3.Cluster{},
		Endpoints:  map[string]*endpointv3.ClusterLoadAssignment{},
		Extensions: map[string]*corev3.TypedExtensionConfig{},
		Responses:  map[string]int{},
		named:      map[string]*subscription{},
	}}
	for _, t := range []string{resource.ClusterType, resource.ListenerType} {
		if err := a.Subscribe(t); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Await handles responses until cond holds, or fails after d.
func (e *Envoy) Await(d time.Duration, cond func(*State) bool) error {
	deadline := time.Now().Add(d)
	for !cond(&e.State) {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w (after %v; versions %v)", ErrTimeout, d, e.State.Versions)
		}
		r, err := e.Next(left)
		if err != nil {
			return fmt.Errorf("%w (versions %v)", err, e.State.Versions)
		}
		if err := e.Handle(r); err != nil {
			return err
		}
	}
	return nil
}

// AllAt reports whether every type the client follows is at version v:
// LDS, CDS, RDS and ECDS, and EDS when it has EDS clusters.
func AllAt(v string) func(*State) bool {
	return func(s *State) bool {
		for _, t := range []string{resource.ListenerType, resource.ClusterType, resource.RouteType, resource.ExtensionConfigType} {
			if s.Versions[t] != v {
				return false
			}
		}
		if sub := s.named[resource.EndpointType]; sub != nil && len(sub.names) > 0 {
			return s.Versions[resource.EndpointType] == v
		}
		return true
	}
}

// Handle decodes and ACKs one response.
func (e *Envoy) Handle(r *discoveryv3.DiscoveryResponse) error {
	s := &e.State
	s.Responses[r.GetTypeUrl()]++
	switch r.GetTypeUrl() {
	case resource.ClusterType:
		clusters, err := decodeAll(r, func() *clusterv3.Cluster { return &clusterv3.Cluster{} }, (*clusterv3.Cluster).GetName)
		if err != nil {
			return err
		}
		s.Clusters = clusters
		var eds []string
		for name, c := range clusters {
			if c.GetType() == clusterv3.Cluster_EDS {
				if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
					name = sn
				}
				eds = append(eds, name)
			}
		}
		return e.ackThenFollow(r, map[string][]string{resource.EndpointType: eds})
	case resource.ListenerType:
		listeners, err := decodeAll(r, func() *listenerv3.Listener { return &listenerv3.Listener{} }, (*listenerv3.Listener).GetName)
		if err != nil {
			return err
		}
		s.Listeners = listeners
		var routes, exts []string
		for _, l := range listeners {
			n, err := rdsName(l)
			if err != nil {
				return err
			}
			routes = append(routes, n)
			names, err := translator.ExtensionNames(l)
			if err != nil {
				return err
			}
			exts = append(exts, names...)
		}
		return e.ackThenFollow(r, map[string][]string{resource.RouteType: routes, resource.ExtensionConfigType: exts})
	case resource.RouteType:
		return decodeNamed(e, r, s.Routes, func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} }, (*routev3.RouteConfiguration).GetName)
	case resource.EndpointType:
		return decodeNamed(e, r, s.Endpoints, func() *endpointv3.ClusterLoadAssignment { return &endpointv3.ClusterLoadAssignment{} }, (*endpointv3.ClusterLoadAssignment).GetClusterName)
	case resource.ExtensionConfigType:
		return decodeNamed(e, r, s.Extensions, func() *corev3.TypedExtensionConfig { return &corev3.TypedExtensionConfig{} }, (*corev3.TypedExtensionConfig).GetName)
	}
	s.Versions[r.GetTypeUrl()] = r.GetVersionInfo()
	return e.ACK(r)
}

// ackThenFollow ACKs a wildcard response, then (re)subscribes by name to
// what it references, as Envoy does when a listener or cluster arrives.
func (e *Envoy) ackThenFollow(r *discoveryv3.DiscoveryResponse, refs map[string][]string) error {
	e.State.Versions[r.GetTypeUrl()] = r.GetVersionInfo()
	if err := e.ACK(r); err != nil {
		return err
	}
	for _, typ := range []string{resource.RouteType, resource.ExtensionConfigType, resource.EndpointType} {
		names, ok := refs[typ]
		if !ok {
			continue
		}
		slices.Sort(names)
		names = slices.Compact(names)
		sub := e.State.named[typ]
		if sub == nil {
			if len(names) == 0 {
				continue
			}
			sub = &subscription{}
			e.State.named[typ] = sub
		}
		if slices.Equal(names, sub.names) {
			continue
		}
		sub.names = names
		if err := e.send(&discoveryv3.DiscoveryRequest{
			Node: e.node, TypeUrl: typ, ResourceNames: names,
			VersionInfo: sub.version, ResponseNonce: sub.nonce,
		}); err != nil {
			return err
		}
	}
	return nil
}

func decodeAll[T proto.Message](r *discoveryv3.DiscoveryResponse, newT func() T, name func(T) string) (map[string]T, error) {
	out := map[string]T{}
	for _, a := range r.GetResources() {
		m := newT()
		if err := a.UnmarshalTo(m); err != nil {
			return nil, fmt.Errorf("xdstest: %s: %w", r.GetTypeUrl(), err)
		}
		out[name(m)] = m
	}
	return out, nil
}

// decodeNamed merges a response to a by-name subscription and ACKs it
// with the names subscribed.
func decodeNamed[T proto.Message](e *Envoy, r *discoveryv3.DiscoveryResponse, into map[string]T, newT func() T, name func(T) string) error {
	got, err := decodeAll(r, newT, name)
	if err != nil {
		return err
	}
	for k, v := range got {
		into[k] = v
	}
	sub := e.State.named[r.GetTypeUrl()]
	if sub == nil {
		sub = &subscription{}
		e.State.named[r.GetTypeUrl()] = sub
	}
	sub.nonce, sub.version = r.GetNonce(), r.GetVersionInfo()
	e.State.Versions[r.GetTypeUrl()] = r.GetVersionInfo()
	return e.ACK(r, sub.names...)
}

func rdsName(l *listenerv3.Listener) (string, error) {
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			var hcm hcmv3.HttpConnectionManager
			if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
				continue // not an HCM
			}
			if n := hcm.GetRds().GetRouteConfigName(); n != "" {
				return n, nil
			}
		}
	}
	return "", fmt.Errorf("xdstest: listener %q uses no RDS route", l.GetName())
}
