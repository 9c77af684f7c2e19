package xdstest

import (
	"fmt"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// State is what an Envoy following the stream would hold, by type.
type State struct {
	Versions  map[string]string // type URL -> last accepted version
	Listeners map[string]*listenerv3.Listener
	Routes    map[string]*routev3.RouteConfiguration
	Clusters  map[string]*clusterv3.Cluster
	// Responses counts responses received per type URL.
	Responses map[string]int

	routeNames []string
	rdsNonce   string
	rdsVersion string
}

// Envoy is an ADS client that behaves like Envoy: it subscribes to CDS and
// LDS, then to RDS for the route names its listeners use, and ACKs
// everything it decodes.
type Envoy struct {
	*ADS
	State State
}

// Connect dials addr and subscribes as nodeID.
func Connect(addr, nodeID string) (*Envoy, error) {
	a, err := Dial(addr, nodeID)
	if err != nil {
		return nil, err
	}
	e := &Envoy{ADS: a, State: State{
		Versions:  map[string]string{},
		Listeners: map[string]*listenerv3.Listener{},
		Routes:    map[string]*routev3.RouteConfiguration{},
		Clusters:  map[string]*clusterv3.Cluster{},
		Responses: map[string]int{},
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

// AllAt reports whether LDS, RDS and CDS are all at version v.
func AllAt(v string) func(*State) bool {
	return func(s *State) bool {
		return s.Versions[resource.ListenerType] == v && s.Versions[resource.RouteType] == v &&
			s.Versions[resource.ClusterType] == v
	}
}

// Handle decodes and ACKs one response.
func (e *Envoy) Handle(r *discoveryv3.DiscoveryResponse) error {
	s := &e.State
	s.Responses[r.GetTypeUrl()]++
	switch r.GetTypeUrl() {
	case resource.ClusterType:
		s.Clusters = map[string]*clusterv3.Cluster{}
		for _, a := range r.GetResources() {
			var c clusterv3.Cluster
			if err := a.UnmarshalTo(&c); err != nil {
				return fmt.Errorf("xdstest: cluster: %w", err)
			}
			s.Clusters[c.GetName()] = &c
		}
	case resource.ListenerType:
		s.Listeners = map[string]*listenerv3.Listener{}
		var names []string
		for _, a := range r.GetResources() {
			var l listenerv3.Listener
			if err := a.UnmarshalTo(&l); err != nil {
				return fmt.Errorf("xdstest: listener: %w", err)
			}
			s.Listeners[l.GetName()] = &l
			n, err := rdsName(&l)
			if err != nil {
				return err
			}
			names = append(names, n)
		}
		s.Versions[r.GetTypeUrl()] = r.GetVersionInfo()
		if err := e.ACK(r); err != nil {
			return err
		}
		slices.Sort(names)
		if !slices.Equal(names, s.routeNames) {
			s.routeNames = names
			return e.send(&discoveryv3.DiscoveryRequest{
				Node: e.node, TypeUrl: resource.RouteType, ResourceNames: names,
				VersionInfo: s.rdsVersion, ResponseNonce: s.rdsNonce,
			})
		}
		return nil
	case resource.RouteType:
		for _, a := range r.GetResources() {
			var rc routev3.RouteConfiguration
			if err := a.UnmarshalTo(&rc); err != nil {
				return fmt.Errorf("xdstest: route: %w", err)
			}
			s.Routes[rc.GetName()] = &rc
		}
		s.rdsNonce, s.rdsVersion = r.GetNonce(), r.GetVersionInfo()
		s.Versions[r.GetTypeUrl()] = r.GetVersionInfo()
		return e.ACK(r, s.routeNames...)
	}
	s.Versions[r.GetTypeUrl()] = r.GetVersionInfo()
	return e.ACK(r)
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
