// Package hostxds is envoyhost's xDS client: it subscribes to a control
// plane over ADS as an Envoy node does (node id and cluster; CDS and LDS,
// then the RDS, EDS and ECDS names those reference; ACK with version and
// nonce, NACK with the error), warms listeners and clusters on what they
// reference, refuses whatever envoyhost does not implement (naming the
// field), and pushes each accepted state to the host as one snapshot (admin
// POST /envoyhost/config). It runs in a process of its own or in a test's:
// never inside envoyhost, whose Go runtime belongs to the filter.
package hostxds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Defaults an Envoy uses.
const (
	// initialFetchTimeout is ConfigSource.initial_fetch_timeout's default:
	// how long a listener or cluster warms before it is used without what
	// it waits for.
	initialFetchTimeout = 15 * time.Second
	// reconnectBackoff is between ADS reconnection attempts.
	reconnectBackoff = 500 * time.Millisecond
	warmingTick      = 100 * time.Millisecond
)

// Options configure an Agent.
type Options struct {
	// XDS is the control plane's ADS address (host:port).
	XDS string
	// NodeID and NodeCluster identify this node (Envoy's --service-node
	// and --service-cluster).
	NodeID, NodeCluster string
	// HostAdmin is envoyhost's admin address (ip:port).
	HostAdmin string
	// DialOptions replace the default plain-text dial (e.g. mTLS credentials).
	DialOptions []grpc.DialOption
	// InitialFetchTimeout overrides the 15 s default warming bound (a
	// config source's own initial_fetch_timeout still wins).
	InitialFetchTimeout time.Duration
	// Mounts maps directories of the Envoy container to local ones, as its
	// volumes would: "/etc/inflow/secrets" -> "e2e/secrets".
	Mounts map[string]string
	// Bootstrap are the static clusters of the node's bootstrap, by name,
	// that api_config_sources may name (the ADS server is not one of them).
	Bootstrap map[string]Bootstrap
	Log       *slog.Logger
}

// Status is what the agent did so far, for tests and logs.
type Status struct {
	// Accepted is the last ACKed version per type URL.
	Accepted map[string]string
	// NACKs counts rejected responses; LastNACK is the last error sent.
	NACKs    int
	LastNACK string
	// Pushes counts snapshots envoyhost accepted.
	Pushes int
}

// Agent is a running xDS client for one envoyhost.
type Agent struct {
	opts   Options
	push   *pusher
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	status  Status
	changed chan struct{} // closed and replaced on every status change
}

// Start connects and keeps the host in step with the control plane until
// Close. It returns once the stream is set up, not when config arrived.
func Start(ctx context.Context, o Options) (*Agent, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.InitialFetchTimeout == 0 {
		o.InitialFetchTimeout = initialFetchTimeout
	}
	if o.NodeCluster == "" {
		o.NodeCluster = "envoyhost"
	}
	if len(o.DialOptions) == 0 {
		o.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	ctx, cancel := context.WithCancel(ctx)
	a := &Agent{opts: o, push: newPusher(o.HostAdmin), cancel: cancel, done: make(chan struct{}),
		status: Status{Accepted: map[string]string{}}, changed: make(chan struct{})}
	sw, err := newSecretWatch()
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(a.done)
		defer sw.close()
		a.run(ctx, sw)
	}()
	return a, nil
}

// Close stops the agent and waits for it.
func (a *Agent) Close() {
	a.cancel()
	<-a.done
}

// Status returns a copy of the current status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status
	s.Accepted = map[string]string{}
	for k, v := range a.status.Accepted {
		s.Accepted[k] = v
	}
	return s
}

// AllAt is a condition for Await: every type in types accepted at
// version; with no types, LDS, CDS and every other type accepted so far
// (a control plane that versions its snapshots as a whole).
func AllAt(version string, types ...string) func(Status) bool {
	return func(s Status) bool {
		ts := types
		if len(ts) == 0 {
			ts = []string{resource.ListenerType, resource.ClusterType}
			for t := range s.Accepted {
				ts = append(ts, t)
			}
		}
		for _, t := range ts {
			if s.Accepted[t] != version {
				return false
			}
		}
		return true
	}
}

// Await waits until cond holds for the status, or ctx ends.
func (a *Agent) Await(ctx context.Context, cond func(Status) bool) error {
	for {
		a.mu.Lock()
		ch := a.changed
		a.mu.Unlock()
		if cond(a.Status()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("hostxds: %w (status %+v)", ctx.Err(), a.Status())
		}
	}
}

func (a *Agent) update(f func(*Status)) {
	a.mu.Lock()
	f(&a.status)
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

func (a *Agent) run(ctx context.Context, sw *secretWatch) {
	st := newState(a.opts.InitialFetchTimeout, mounts(a.opts.Mounts), a.opts.Bootstrap)
	for ctx.Err() == nil {
		err := a.session(ctx, st, sw)
		if ctx.Err() != nil {
			return
		}
		a.opts.Log.Warn("hostxds: ADS stream ended; reconnecting", "error", err)
		select {
		case <-time.After(reconnectBackoff):
		case <-ctx.Done():
			return
		}
	}
}

// session is one ADS stream: subscribe, then handle responses, secret
// changes and warming deadlines one at a time.
func (a *Agent) session(ctx context.Context, st *state, sw *secretWatch) error {
	conn, err := grpc.NewClient(a.opts.XDS, a.opts.DialOptions...)
	if err != nil {
		return err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: a.opts.NodeID, Cluster: a.opts.NodeCluster, UserAgentName: "envoy",
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: "1.39.0"}}
	s := &session{agent: a, ctx: sctx, stream: stream, node: node, st: st, sw: sw, subs: map[string][]string{},
		deltas: map[subKey]*deltaStream{}, deltaResps: make(chan deltaResponse)}
	defer s.closeDeltas()
	// a new stream starts over: the server sends everything again, and
	// envoyhost keeps what did not change
	st.resetStream()
	for _, t := range []string{resource.ClusterType, resource.ListenerType} {
		if err := s.send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: t}); err != nil {
			return err
		}
	}
	resps := make(chan *discoveryv3.DiscoveryResponse)
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case resps <- r:
			case <-sctx.Done():
				return
			}
		}
	}()
	tick := time.NewTicker(warmingTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case r := <-resps:
			if err := s.handle(ctx, r); err != nil {
				return err
			}
		case dr := <-s.deltaResps:
			if dr.err != nil {
				return fmt.Errorf("hostxds: delta %s through %s: %w", dr.key.typ, dr.key.source, dr.err)
			}
			if err := s.handleDelta(ctx, dr.key, dr.r); err != nil {
				return err
			}
		case ev := <-sw.w.Events:
			if st.secretChanged(ev.Name) {
				s.sync(ctx, "")
			}
		case err := <-sw.w.Errors:
			a.opts.Log.Warn("hostxds: watching secret files", "error", err)
		case <-tick.C:
			if st.warmingExpired(time.Now()) {
				s.sync(ctx, "")
			}
		}
	}
}

type session struct {
	ctx    context.Context // the stream's: delta streams end with it
	agent  *Agent
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	st     *state
	sw     *secretWatch
	subs   map[string][]string // non-wildcard type -> subscribed names
	// deltas are the streams to bootstrap clusters, per subscription
	deltas     map[subKey]*deltaStream
	deltaResps chan deltaResponse
}

func (s *session) closeDeltas() {
	for _, d := range s.deltas {
		d.close()
	}
}

func (s *session) send(r *discoveryv3.DiscoveryRequest) error {
	if err := s.stream.Send(r); err != nil {
		return fmt.Errorf("hostxds: send %s: %w", r.GetTypeUrl(), err)
	}
	return nil
}

// handle decodes one response, applies it through the host, and ACKs or
// NACKs it as GrpcMuxImpl::onDiscoveryResponse does: an ACK carries the new
// version and the response's nonce; a NACK the last accepted version, the
// response's nonce and error_detail with code INTERNAL and the reason
// (source/extensions/config_subscription/grpc/grpc_mux_impl.cc:363-460).
func (s *session) handle(ctx context.Context, r *discoveryv3.DiscoveryResponse) error {
	t := r.GetTypeUrl()
	next, err := s.st.with(t, r.GetResources())
	partial := false
	if err == nil {
		if t == resource.ClusterType {
			partial, err = s.applyClusters(ctx, next)
		} else {
			err = s.apply(ctx, next)
		}
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // shutting down: not the update's fault
	}
	var refused *refusedListeners
	if errors.As(err, &refused) {
		// the listeners accepted are in place (and their RDS and ECDS
		// wanted); only an LDS update is NACKed for the others
		s.st.commit(next)
		if err := s.resubscribe(); err != nil {
			return err
		}
		if t != resource.ListenerType {
			err = nil
		}
	}
	if partial {
		// the clusters that could be created were; the rest kept what
		// they had, and the response is refused: the version stays
		s.st.commit(next)
		if rerr := s.resubscribe(); rerr != nil {
			return rerr
		}
	}
	if err != nil {
		msg := err.Error()
		s.agent.opts.Log.Error("hostxds: rejecting an update (NACK)", "type", t, "version", r.GetVersionInfo(), "error", msg)
		s.agent.update(func(st *Status) { st.NACKs++; st.LastNACK = msg })
		if t == resource.ExtensionConfigType {
			// a refused first config ends the warm-up of the listeners
			// waiting for it: they serve without it (NFCF)
			for _, n := range s.subs[t] {
				if s.st.cur.ecds[n] == nil {
					s.st.ecdsFailed[n] = true
				}
			}
			s.sync(ctx, "")
		}
		return s.send(&discoveryv3.DiscoveryRequest{
			Node: s.node, TypeUrl: t, VersionInfo: s.st.versions[t], ResponseNonce: r.GetNonce(),
			ResourceNames: s.subs[t], ErrorDetail: &status.Status{Code: int32(codes.Internal), Message: msg},
		})
	}
	s.st.commit(next)
	s.st.versions[t], s.st.nonces[t] = r.GetVersionInfo(), r.GetNonce()
	s.agent.update(func(st *Status) { st.Accepted[t] = r.GetVersionInfo() })
	if err := s.send(&discoveryv3.DiscoveryRequest{
		Node: s.node, TypeUrl: t, VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce(), ResourceNames: s.subs[t],
	}); err != nil {
		return err
	}
	return s.resubscribe()
}

// applyClusters applies a CDS update as CdsApiHelper::onConfigUpdate does
// (source/common/upstream/cds_api_helper.cc:34-96): each cluster is added
// or updated on its own, one the cluster manager refuses (e.g. its SDS
// file does not exist) keeps its previous version or stays absent, the
// others are applied, and the refusals make the update a NACK,
// "Error adding/updating cluster(s) name: reason, ..."
// (cds_api_impl.cc:106-112). partial reports that next holds the applied
// part, to be committed although the response is refused.
func (s *session) applyClusters(ctx context.Context, next *resources) (partial bool, err error) {
	var refused []string
	seen := map[string]bool{}
	for {
		err = s.apply(ctx, next)
		var ce *clusterError
		if !errors.As(err, &ce) || seen[ce.name] {
			break
		}
		seen[ce.name] = true
		refused = append(refused, ce.Error())
		if old := s.st.cur.clusters[ce.name]; old != nil {
			next.clusters[ce.name] = old
		} else {
			delete(next.clusters, ce.name)
		}
	}
	// Listeners an earlier LDS update refused are that update's NACK, not
	// this one's: a CDS update is judged on its clusters alone.
	var listeners *refusedListeners
	if errors.As(err, &listeners) {
		err = nil
	}
	if err != nil || len(refused) == 0 {
		return false, err
	}
	return true, fmt.Errorf("Error adding/updating cluster(s) %s", strings.Join(refused, ", "))
}

// apply translates the candidate state and pushes what is warm. With
// refused listeners the rest is pushed and the *refusedListeners returned.
func (s *session) apply(ctx context.Context, next *resources) error {
	snap, err := s.st.translate(ctx, next, time.Now(), s.sw)
	var refused *refusedListeners
	if errors.As(err, &refused) {
		err = nil
	}
	if err != nil {
		return err
	}
	if err := s.agent.push.send(ctx, snap); err != nil {
		return err
	}
	s.st.active = snap
	s.agent.update(func(st *Status) { st.Pushes++ })
	if refused != nil {
		return refused
	}
	return nil
}

// sync re-pushes the accepted state (a secret changed, a warming deadline
// passed): nothing to ACK.
func (s *session) sync(ctx context.Context, _ string) {
	if err := s.apply(ctx, s.st.cur); err != nil {
		s.agent.opts.Log.Error("hostxds: re-applying the accepted config", "error", err)
	}
}

// resubscribe asks for the RDS, EDS and ECDS names the accepted listeners
// and clusters reference, when they changed: over ADS, or over the delta
// stream of the bootstrap cluster their config source names.
func (s *session) resubscribe() error {
	want := s.st.referenced()
	for _, t := range []string{resource.RouteType, resource.EndpointType, resource.ExtensionConfigType} {
		names := want[subKey{"", t}]
		if equal(names, s.subs[t]) {
			continue
		}
		if len(names) == 0 && s.subs[t] == nil {
			continue
		}
		s.subs[t] = names
		if err := s.send(&discoveryv3.DiscoveryRequest{
			Node: s.node, TypeUrl: t, ResourceNames: names, VersionInfo: s.st.versions[t], ResponseNonce: s.st.nonces[t],
		}); err != nil {
			return err
		}
	}
	for k, names := range want {
		if k.source == "" {
			continue
		}
		d := s.deltas[k]
		if d == nil {
			b, ok := s.agent.opts.Bootstrap[k.source]
			if !ok {
				continue // refused when the state was translated
			}
			var err error
			if d, err = openDelta(s.ctx, k, b, s.deltaResps); err != nil {
				return err
			}
			s.deltas[k] = d
		}
		if err := d.resubscribe(s.node, names); err != nil {
			return err
		}
	}
	for k, d := range s.deltas {
		if _, ok := want[k]; !ok {
			if err := d.resubscribe(s.node, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// handleDelta applies one delta response and ACKs it (the nonce) or NACKs
// it (the nonce and error_detail INTERNAL with the reason), as
// DeltaSubscriptionState does (source/extensions/config_subscription/grpc/
// delta_subscription_state.cc:270-285, 370-380).
func (s *session) handleDelta(ctx context.Context, k subKey, r *discoveryv3.DeltaDiscoveryResponse) error {
	d := s.deltas[k]
	if d == nil {
		return nil
	}
	next, err := s.st.withDelta(k.typ, r)
	if err == nil {
		err = s.apply(ctx, next)
	}
	var refused *refusedListeners
	if errors.As(err, &refused) {
		err = nil // an LDS matter, NACKed there
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	key := k.source + " " + k.typ
	if err != nil {
		msg := err.Error()
		s.agent.opts.Log.Error("hostxds: rejecting a delta update (NACK)", "source", k.source, "type", k.typ, "error", msg)
		s.agent.update(func(st *Status) { st.NACKs++; st.LastNACK = msg })
		if k.typ == resource.ExtensionConfigType {
			for _, n := range d.names {
				if s.st.cur.ecds[n] == nil {
					s.st.ecdsFailed[n] = true
				}
			}
			s.sync(ctx, "")
		}
		return d.request(s.node, &discoveryv3.DeltaDiscoveryRequest{ResponseNonce: r.GetNonce(),
			ErrorDetail: &status.Status{Code: int32(codes.Internal), Message: msg}})
	}
	s.st.commit(next)
	s.agent.update(func(st *Status) { st.Accepted[key] = r.GetSystemVersionInfo() })
	if err := d.request(s.node, &discoveryv3.DeltaDiscoveryRequest{ResponseNonce: r.GetNonce()}); err != nil {
		return err
	}
	return s.resubscribe()
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// decode unpacks a response's resources by type.
func decode(t string, res []*anypb.Any) (map[string]proto.Message, error) {
	out := map[string]proto.Message{}
	for _, a := range res {
		var m proto.Message
		switch t {
		case resource.ListenerType:
			m = &listenerv3.Listener{}
		case resource.RouteType:
			m = &routev3.RouteConfiguration{}
		case resource.ClusterType:
			m = &clusterv3.Cluster{}
		case resource.EndpointType:
			m = &endpointv3.ClusterLoadAssignment{}
		case resource.ExtensionConfigType:
			m = &corev3.TypedExtensionConfig{}
		default:
			return nil, fmt.Errorf("%w: resource type %s", ErrNotModelled, t)
		}
		if a.GetTypeUrl() != t {
			return nil, fmt.Errorf("resource of type %s in a %s response", a.GetTypeUrl(), t)
		}
		if err := a.UnmarshalTo(m); err != nil {
			return nil, fmt.Errorf("%s: %w", t, err)
		}
		n := resourceName(m)
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("duplicate %s resource %q", t, n)
		}
		out[n] = m
	}
	return out, nil
}

func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case *listenerv3.Listener:
		return r.GetName()
	case *routev3.RouteConfiguration:
		return r.GetName()
	case *clusterv3.Cluster:
		return r.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case *corev3.TypedExtensionConfig:
		return r.GetName()
	}
	return ""
}
