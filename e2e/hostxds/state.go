package hostxds

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// resources is one accepted (or candidate) state of the subscriptions.
type resources struct {
	listeners map[string]*listenerv3.Listener
	clusters  map[string]*clusterv3.Cluster
	routes    map[string]*routev3.RouteConfiguration
	cla       map[string]*endpointv3.ClusterLoadAssignment
	ecds      map[string]*corev3.TypedExtensionConfig
	haveCDS   bool
}

func (r *resources) clone() *resources {
	return &resources{listeners: maps(r.listeners), clusters: maps(r.clusters), routes: maps(r.routes),
		cla: maps(r.cla), ecds: maps(r.ecds), haveCDS: r.haveCDS}
}

func maps[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// hostSnapshot is the whole configuration envoyhost runs (registry.c).
type hostSnapshot struct {
	Listeners        []*hostListener   `json:"listeners"`
	RouteConfigs     []json.RawMessage `json:"route_configs"`
	Clusters         []*hostCluster    `json:"clusters"`
	ExtensionConfigs []*hostGolang     `json:"extension_configs"`
	Secrets          []hostSecret      `json:"secrets"`

	listeners map[string]*hostListener
	clusters  map[string]*hostCluster
}

type state struct {
	cur              *resources
	versions, nonces map[string]string
	timeout          time.Duration
	// warming: when each listener or cluster version started waiting for
	// what it references; a key is "kind/name/hash"
	warming map[string]time.Time
	limits  map[string]time.Duration
	expired map[string]bool
	// active is what envoyhost last accepted: a warming new version keeps
	// the old one serving, as Envoy's warming listeners do
	active *hostSnapshot
	// directories whose changes re-read secrets
	secretDirs map[string]bool
	mounts     mounts
	// ecdsFailed: ECDS names whose first config was refused; a listener
	// waiting on one goes live without it (config_discovery_impl.cc:185-192)
	ecdsFailed map[string]bool
	// initDone: the clusters were all warm once (start-up is over)
	initDone bool
	// bootstrap: the static clusters config sources may name
	bootstrap map[string]Bootstrap
}

func newState(timeout time.Duration, m mounts, boot map[string]Bootstrap) *state {
	return &state{
		cur: &resources{listeners: map[string]*listenerv3.Listener{}, clusters: map[string]*clusterv3.Cluster{},
			routes: map[string]*routev3.RouteConfiguration{}, cla: map[string]*endpointv3.ClusterLoadAssignment{},
			ecds: map[string]*corev3.TypedExtensionConfig{}},
		versions: map[string]string{}, nonces: map[string]string{}, timeout: timeout,
		warming: map[string]time.Time{}, limits: map[string]time.Duration{}, expired: map[string]bool{}, secretDirs: map[string]bool{},
		mounts: m, ecdsFailed: map[string]bool{}, bootstrap: boot,
	}
}

func (s *state) resetStream() {
	s.versions = map[string]string{}
	s.nonces = map[string]string{}
}

// with is the candidate state after a response of type t. LDS and CDS
// responses carry the whole set; RDS, EDS and ECDS the subscribed names.
func (s *state) with(t string, res []*anypb.Any) (*resources, error) {
	got, err := decode(t, res)
	if err != nil {
		return nil, err
	}
	next := s.cur.clone()
	switch t {
	case resource.ListenerType:
		next.listeners = map[string]*listenerv3.Listener{}
		for n, m := range got {
			next.listeners[n] = m.(*listenerv3.Listener)
		}
	case resource.ClusterType:
		next.clusters = map[string]*clusterv3.Cluster{}
		for n, m := range got {
			next.clusters[n] = m.(*clusterv3.Cluster)
		}
		next.haveCDS = true
	case resource.RouteType:
		for n, m := range got {
			next.routes[n] = m.(*routev3.RouteConfiguration)
		}
	case resource.EndpointType:
		for n, m := range got {
			next.cla[n] = m.(*endpointv3.ClusterLoadAssignment)
		}
	case resource.ExtensionConfigType:
		for n, m := range got {
			next.ecds[n] = m.(*corev3.TypedExtensionConfig)
		}
	}
	return next, nil
}

func (s *state) commit(next *resources) { s.cur = next }

// referenced is, per subscription (a non-wildcard type through ADS or a
// bootstrap cluster), the sorted names the accepted listeners and clusters use.
func (s *state) referenced() map[subKey][]string {
	out := map[subKey][]string{}
	add := func(k subKey, n string) {
		if n != "" && !slices.Contains(out[k], n) {
			out[k] = append(out[k], n)
		}
	}
	for _, l := range s.cur.listeners {
		if hl, deps, err := translateListener(l); err == nil && hl != nil {
			add(subKey{"", resource.RouteType}, deps.rds)
			add(subKey{deps.ecdsSource, resource.ExtensionConfigType}, deps.ecds)
		}
	}
	for _, c := range s.cur.clusters {
		if c.GetType() == clusterv3.Cluster_EDS {
			src, err := configSource(c.GetEdsClusterConfig().GetEdsConfig(), "")
			if err != nil {
				continue
			}
			add(subKey{src, resource.EndpointType}, edsName(c))
		}
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}

// withDelta is the candidate state after a delta response: resources added
// or replaced by name, removed_resources deleted.
func (s *state) withDelta(t string, r *discoveryv3.DeltaDiscoveryResponse) (*resources, error) {
	var res []*anypb.Any
	for _, x := range r.GetResources() {
		res = append(res, x.GetResource())
	}
	next, err := s.with(t, res)
	if err != nil {
		return nil, err
	}
	for _, n := range r.GetRemovedResources() {
		switch t {
		case resource.EndpointType:
			delete(next.cla, n)
		case resource.ExtensionConfigType:
			delete(next.ecds, n)
		}
	}
	return next, nil
}

// wait reports whether key (a resource version) should still be held
// back: for its config sources' initial_fetch_timeout (unset: the
// default; 0: for ever), as GrpcSubscriptionImpl::start arms it
// (source/extensions/config_subscription/grpc/grpc_subscription_impl.cc:29-37).
func (s *state) wait(key string, now time.Time, timeout *time.Duration) bool {
	limit := s.timeout
	if timeout != nil {
		limit = *timeout
	}
	start, ok := s.warming[key]
	if !ok {
		s.warming[key] = now
		s.limits[key] = limit
		return true
	}
	if limit == 0 || now.Sub(start) < limit {
		return true
	}
	s.expired[key] = true
	return false
}

// warmingExpired reports whether a warming resource reached its timeout
// since the last look, so the state must be pushed again.
func (s *state) warmingExpired(now time.Time) bool {
	for k, start := range s.warming {
		if l := s.limits[k]; !s.expired[k] && l > 0 && now.Sub(start) >= l {
			return true
		}
	}
	return false
}

func (s *state) secretChanged(path string) bool {
	return s.secretDirs[filepath.Dir(path)] || s.secretDirs[path]
}

// translate builds the snapshot envoyhost runs for r: every referenced
// resource translated (an error refuses the update), warming listeners and
// clusters kept at their active version until their dependencies arrive or
// the initial fetch timeout passes (Envoy then goes on without them: no
// route is a 404, no filter config a 500, no endpoints a 503). A listener
// warms on its RDS and ECDS init targets
// (source/common/listener_manager/listener_impl.cc:358-383, 493-496); at
// start-up the cluster manager initialises CDS and the EDS of its clusters
// before the listeners (source/common/upstream/cluster_manager_impl.cc:148-248).
func (s *state) translate(ctx context.Context, r *resources, now time.Time, sw *secretWatch) (*hostSnapshot, error) {
	snap := &hostSnapshot{Listeners: []*hostListener{}, RouteConfigs: []json.RawMessage{}, Clusters: []*hostCluster{},
		ExtensionConfigs: []*hostGolang{}, Secrets: []hostSecret{},
		listeners: map[string]*hostListener{}, clusters: map[string]*hostCluster{}}
	live := map[string]bool{}
	secrets := map[string]hostSecret{}
	clustersWarm := true
	for _, name := range sortedKeys(r.clusters) {
		c := r.clusters[name]
		cla := r.cla[edsName(c)]
		hc, deps, err := translateCluster(ctx, c, cla, s.mounts)
		if err == nil {
			err = checkBootstrapCluster(s.bootstrap, deps.edsSource, "Cluster "+name+" eds_config")
		}
		if err != nil {
			return nil, &clusterError{name: name, err: err}
		}
		key := "cluster/" + name + "/" + hc.Hash
		live[key] = true
		if deps.eds != "" && cla == nil && s.wait(key, now, deps.fetchTimeout) {
			clustersWarm = false
			if old := s.active.cluster(name); old != nil {
				snap.addCluster(old)
			}
			continue
		}
		if deps.secretPath != "" {
			v, watch, err := readSDS(s.mounts, deps)
			if err != nil {
				return nil, &clusterError{name: name, err: err}
			}
			for _, dir := range watch {
				sw.add(dir)
				s.secretDirs[dir] = true
			}
			// a secret that cannot be read is absent: the injector answers 401
			if len(v) > 0 {
				secrets[deps.secret] = hostSecret{Name: deps.secret, Value: v}
			}
		}
		snap.addCluster(hc)
	}
	usedRoutes, usedECDS := map[string]bool{}, map[string]bool{}
	var refused []string
	// routeFilters: per route configuration, the golang filter names of
	// the listeners using it (their per-route configs' keys).
	routeFilters := map[string][]string{}
	for _, name := range sortedKeys(r.listeners) {
		hl, deps, err := translateListener(r.listeners[name])
		if err == nil {
			err = checkBootstrapCluster(s.bootstrap, deps.ecdsSource, "Listener "+name+" config_discovery")
		}
		if err != nil {
			// LdsApiImpl::onConfigUpdate adds or updates each listener on
			// its own: a refused one keeps its old version (or stays
			// absent), the others are applied, and the update is NACKed
			// with the failures (source/common/listener_manager/lds_api.cc:60-110)
			refused = append(refused, err.Error())
			if old := s.active.listener(name); old != nil {
				snap.addListener(old)
				usedRoutes[jsonString(old.HCM, "rds_route_config_name")] = true
				if old.Golang != nil {
					usedECDS[old.Golang.ECDS] = true
				}
			}
			continue
		}
		key := "listener/" + name + "/" + hl.Hash
		live[key] = true
		// at start-up listeners wait for the cluster manager: CDS and the
		// clusters' EDS (Envoy's server init); after that, for their own
		// RDS and ECDS resources only
		ready := r.haveCDS && (s.initDone || clustersWarm) && (deps.rds == "" || r.routes[deps.rds] != nil) &&
			(deps.ecds == "" || r.ecds[deps.ecds] != nil || s.ecdsFailed[deps.ecds])
		if !ready && s.wait(key, now, deps.fetchTimeout) {
			if old := s.active.listener(name); old != nil {
				snap.addListener(old)
				hl = old
			} else {
				continue
			}
		} else {
			snap.addListener(hl)
		}
		usedRoutes[deps.rds] = true
		usedECDS[deps.ecds] = true
		routeFilters[deps.rds] = append(routeFilters[deps.rds], deps.golang)
	}
	for _, name := range sortedKeys(r.routes) {
		if !usedRoutes[name] && !s.active.usesRoute(name) {
			continue
		}
		filters := routeFilters[name]
		if len(filters) == 0 {
			// kept for a draining listener: its filter keeps its name
			filters = s.active.routeFilters(name)
		}
		rc, err := translateRouteConfig(r.routes[name], filters)
		if err != nil {
			return nil, err
		}
		snap.RouteConfigs = append(snap.RouteConfigs, rc)
	}
	for _, name := range sortedKeys(r.ecds) {
		if !usedECDS[name] && !s.active.usesECDS(name) {
			continue
		}
		g, err := translateExtensionConfig(r.ecds[name])
		if err != nil {
			return nil, err
		}
		snap.ExtensionConfigs = append(snap.ExtensionConfigs, g)
	}
	if r.haveCDS && clustersWarm {
		s.initDone = true
	}
	for _, k := range sortedKeys(secrets) {
		snap.Secrets = append(snap.Secrets, secrets[k])
	}
	for k := range s.warming {
		if !live[k] {
			delete(s.warming, k)
			delete(s.limits, k)
			delete(s.expired, k)
		}
	}
	if len(refused) > 0 {
		return snap, &refusedListeners{reasons: refused}
	}
	return snap, nil
}

// refusedListeners: the snapshot holds the other listeners; the LDS
// update that brought these is NACKed with their reasons.
type refusedListeners struct{ reasons []string }

func (e *refusedListeners) Error() string {
	return "Error adding/updating listener(s) " + strings.Join(e.reasons, "; ")
}

func jsonString(raw json.RawMessage, key string) string {
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	v, _ := m[key].(string)
	return v
}

// clusterError is a cluster Envoy's cluster manager refuses: the CDS
// update applies without it (cds_api_helper.cc).
type clusterError struct {
	name string
	err  error
}

func (e *clusterError) Error() string { return e.name + ": " + e.err.Error() }
func (e *clusterError) Unwrap() error { return e.err }

func edsName(c *clusterv3.Cluster) string {
	if c.GetType() != clusterv3.Cluster_EDS {
		return ""
	}
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

func (h *hostSnapshot) addCluster(c *hostCluster) {
	h.Clusters = append(h.Clusters, c)
	h.clusters[c.Name] = c
}

func (h *hostSnapshot) addListener(l *hostListener) {
	h.Listeners = append(h.Listeners, l)
	h.listeners[l.Name] = l
}

func (h *hostSnapshot) cluster(name string) *hostCluster {
	if h == nil {
		return nil
	}
	return h.clusters[name]
}

func (h *hostSnapshot) listener(name string) *hostListener {
	if h == nil {
		return nil
	}
	return h.listeners[name]
}

// usesRoute: an active (older) listener version still serves with it.
func (h *hostSnapshot) usesRoute(name string) bool {
	if h == nil {
		return false
	}
	for _, l := range h.Listeners {
		var m map[string]any
		if json.Unmarshal(l.HCM, &m) == nil && m["rds_route_config_name"] == name {
			return true
		}
	}
	return false
}

// routeFilters are the golang filter names of the active listeners that
// serve with route configuration name.
func (h *hostSnapshot) routeFilters(name string) []string {
	if h == nil {
		return nil
	}
	var out []string
	for _, l := range h.Listeners {
		var m map[string]any
		if json.Unmarshal(l.HCM, &m) == nil && m["rds_route_config_name"] == name {
			out = append(out, l.golangFilter)
		}
	}
	return out
}

func (h *hostSnapshot) usesECDS(name string) bool {
	if h == nil {
		return false
	}
	for _, l := range h.Listeners {
		if l.Golang != nil && l.Golang.ECDS == name {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
