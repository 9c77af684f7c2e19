package xds

import (
	"log/slog"
	"maps"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// What happens to a response an Envoy refused (a NACK). Envoy keeps what it
// had and waits: it asks again only with its next request, which it sends
// right after the NACK. go-control-plane's snapshot cache answers that
// request at once in the state-of-the-world protocol (its version is the
// last accepted one, not the snapshot's), so an update Envoy cannot take
// yet is pushed again and refused again as fast as the two can talk: a
// measured 3,400 NACKs a second for one cluster whose SDS file did not
// exist yet. In the delta protocol it never answers (the client has every
// resource version it was sent), so the update waits for the next change.
// Neither is right for the refusals that heal by themselves, such as an
// SDS file a sidecar writes a moment after the control plane pushed the
// cluster that names it. So the retry cache holds a NACKed type's next
// response for a backoff, per stream: 250 ms, doubling per consecutive
// NACK of that type, at most 8 s, reset by an ACK. The response then
// carries the current snapshot, whatever changed meanwhile.

// NACK backoff defaults: DefaultNACKBackoff is also the shortest time
// between two sends of one refused update to one stream.
const (
	DefaultNACKBackoff    = 250 * time.Millisecond
	defaultNACKBackoffMax = 8 * time.Second
)

// backoff is the wait before the n-th consecutive re-send (n >= 1).
type backoff struct{ base, max time.Duration }

func (b backoff) after(n int) time.Duration {
	d := b.base
	for i := 1; i < n && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

// retryCache is the snapshot cache with NACKed responses held back.
type retryCache struct {
	cachev3.SnapshotCache
	backoff backoff
	log     *slog.Logger

	mu      sync.Mutex
	streams map[int64]*streamNACKs
	// held are the NACK requests the next CreateWatch / CreateDeltaWatch
	// holds back, and for how long (the callbacks see each request just
	// before the server hands it to the cache, on the stream's goroutine).
	held      map[*discoveryv3.DiscoveryRequest]time.Duration
	heldDelta map[*discoveryv3.DeltaDiscoveryRequest]heldDelta
}

type heldDelta struct {
	wait   time.Duration
	forget map[string]bool // the refused resources, to send again
}

// streamNACKs is one stream's last response and NACK streak per type.
type streamNACKs struct {
	nonce  map[string]string
	names  map[string][]string // delta: the resources of that response
	streak map[string]int
}

func newRetryCache(c cachev3.SnapshotCache, b backoff, log *slog.Logger) *retryCache {
	return &retryCache{SnapshotCache: c, backoff: b, log: log, streams: map[int64]*streamNACKs{},
		held: map[*discoveryv3.DiscoveryRequest]time.Duration{}, heldDelta: map[*discoveryv3.DeltaDiscoveryRequest]heldDelta{}}
}

func (r *retryCache) stream(id int64) *streamNACKs {
	s := r.streams[id]
	if s == nil {
		s = &streamNACKs{nonce: map[string]string{}, names: map[string][]string{}, streak: map[string]int{}}
		r.streams[id] = s
	}
	return s
}

// sent records a response about to go out on stream id.
func (r *retryCache) sent(id int64, typeURL, nonce string, names []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stream(id)
	s.nonce[typeURL] = nonce
	s.names[typeURL] = names
}

// answered looks at a request of stream id: an ACK of the last response
// ends the type's streak, a NACK of it lengthens the streak and returns
// the wait before the type's next response. A request naming an older
// nonce is one the server ignores.
func (r *retryCache) answered(id int64, typeURL, nonce string, nack bool) (time.Duration, []string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stream(id)
	if nonce == "" || nonce != s.nonce[typeURL] {
		return 0, nil, false
	}
	if !nack {
		delete(s.streak, typeURL)
		return 0, nil, false
	}
	s.streak[typeURL]++
	return r.backoff.after(s.streak[typeURL]), s.names[typeURL], true
}

func (r *retryCache) onRequest(id int64, req *discoveryv3.DiscoveryRequest) {
	wait, _, hold := r.answered(id, req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail() != nil)
	if hold {
		r.mu.Lock()
		r.held[req] = wait
		r.mu.Unlock()
	}
}

func (r *retryCache) onDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) {
	wait, names, hold := r.answered(id, req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail() != nil)
	if hold {
		forget := make(map[string]bool, len(names))
		for _, n := range names {
			forget[n] = true
		}
		r.mu.Lock()
		r.heldDelta[req] = heldDelta{wait: wait, forget: forget}
		r.mu.Unlock()
	}
}

func (r *retryCache) closed(id int64, _ *corev3.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.streams, id)
}

// CreateWatch holds a NACK's watch back for its wait, then asks the cache,
// which answers with the current snapshot: the request carries the last
// version Envoy accepted.
func (r *retryCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	r.mu.Lock()
	wait, hold := r.held[req]
	delete(r.held, req)
	r.mu.Unlock()
	if !hold {
		return r.SnapshotCache.CreateWatch(req, sub, out)
	}
	r.log.Info("xds: re-sending a refused update after a backoff", "type", req.GetTypeUrl(), "node", req.GetNode().GetId(), "after", wait)
	return later(wait, func() (func(), error) { return r.logged(r.SnapshotCache.CreateWatch(req, sub, out)) }), nil
}

// CreateDeltaWatch holds a delta NACK's watch back, then asks the cache as
// if the client had never received the refused resources, so it sends
// them again.
func (r *retryCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	r.mu.Lock()
	h, hold := r.heldDelta[req]
	delete(r.heldDelta, req)
	r.mu.Unlock()
	if !hold {
		return r.SnapshotCache.CreateDeltaWatch(req, sub, out)
	}
	r.log.Info("xds: re-sending a refused update after a backoff (delta)", "type", req.GetTypeUrl(), "node", req.GetNode().GetId(), "after", h.wait)
	return later(h.wait, func() (func(), error) {
		return r.logged(r.SnapshotCache.CreateDeltaWatch(req, forgetting{Subscription: sub, forget: h.forget}, out))
	}), nil
}

func (r *retryCache) logged(cancel func(), err error) (func(), error) {
	if err != nil {
		r.log.Warn("xds: re-sending a refused update", "error", err)
	}
	return cancel, err
}

// later creates a watch after wait and returns its cancel, which also
// stops the wait. The stream cancels a type's watch before it touches that
// type's subscription again, so the subscription is not shared while the
// watch is created.
func later(wait time.Duration, create func() (func(), error)) func() {
	var (
		mu        sync.Mutex
		cancelled bool
		cancel    func()
	)
	t := time.AfterFunc(wait, func() {
		mu.Lock()
		defer mu.Unlock()
		if cancelled {
			return
		}
		// holding mu while the cache answers into the stream's channel is
		// safe: it has room for one response per type, and a type has at
		// most one watch
		c, err := create()
		if err == nil {
			cancel = c
		}
	})
	return func() {
		t.Stop()
		mu.Lock()
		cancelled = true
		c := cancel
		mu.Unlock()
		if c != nil {
			c()
		}
	}
}

// forgetting is a delta subscription whose client is taken not to have the
// refused resources, so the cache sends them again.
type forgetting struct {
	cachev3.Subscription
	forget map[string]bool
}

func (f forgetting) ReturnedResources() map[string]string {
	out := maps.Clone(f.Subscription.ReturnedResources())
	for n := range f.forget {
		delete(out, n)
	}
	return out
}
