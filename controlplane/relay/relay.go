// Package relay is the state relay through which Inflow's Envoy replicas
// share pool state (package filter/sharing): each replica holds one HTTP/2
// stream per pool, POST sharing.Path+pool, whose request body carries its
// placements and scrapes and whose response body carries everyone else's.
// The relay checks each frame and forwards it to the pool's other streams;
// it keeps no state beyond the open streams, so a restarted relay loses
// nothing the replicas need (they fall back to working alone until they
// reconnect). A replica too slow to take its frames loses them rather
// than slowing the others. Several control-plane replicas, each with its
// own relay, share through links between the relays (peers.go).
package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inflow-gateway/inflow/filter/sharing"
)

// A stream that does not keep up may have this much waiting for it (about
// a second of a busy replica's placements) before the relay drops its
// frames; the count bounds the channel, the bytes its memory.
const (
	streamQueueFrames = 8192
	streamQueueBytes  = 4 << 20
)

// Observer counts what the relay does (admin.Metrics); nil counts nothing.
type Observer interface {
	RelayStreamOpened()
	RelayStreamClosed()
	RelayFrames(forwarded, dropped uint64)
	// RelayPeerLinks counts links to and from other relays (+1 up, -1 down).
	RelayPeerLinks(delta int)
}

// Relay is an http.Handler forwarding frames between the streams of each
// pool. The zero value is not ready: use New.
type Relay struct {
	obs   Observer
	id    string        // tells this relay's own address among its peers'
	local chan struct{} // a pool gained or lost its last Envoy stream
	mu    sync.Mutex
	pools map[string]map[*stream]struct{}
}

type stream struct {
	kind   streamKind
	out    chan []byte // whole frames, length prefix included
	queued atomic.Int64
}

func newStream(kind streamKind) *stream {
	return &stream{kind: kind, out: make(chan []byte, streamQueueFrames)}
}

// New returns a Relay that reports to obs (may be nil).
func New(obs Observer) *Relay {
	return &Relay{obs: obs, id: newID(), local: make(chan struct{}, 1), pools: make(map[string]map[*stream]struct{})}
}

// ServeHTTP implements http.Handler.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	pool, ok := strings.CutPrefix(req.URL.EscapedPath(), sharing.Path)
	if ok {
		var err error
		pool, err = url.PathUnescape(pool)
		ok = err == nil && pool != ""
	}
	switch {
	case !ok:
		http.Error(w, "not a pool channel: POST "+sharing.Path+"<pool>", http.StatusNotFound)
		return
	case req.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	case req.ProtoMajor != 2:
		// One stream carries both directions: that needs HTTP/2.
		http.Error(w, "HTTP/2 required", http.StatusHTTPVersionNotSupported)
		return
	case req.Header.Get("Content-Type") != sharing.ContentType:
		http.Error(w, "Content-Type must be "+sharing.ContentType, http.StatusUnsupportedMediaType)
		return
	}
	kind := local
	if id := req.Header.Get(peerHeader); id == r.id {
		// This relay dialled one of its own addresses among the peers.
		http.Error(w, "a relay's own address", http.StatusConflict)
		return
	} else if id != "" {
		kind = fromPeer
	}
	w.Header().Set("Content-Type", sharing.ContentType)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	s := newStream(kind)
	r.join(pool, s)
	defer r.leave(pool, s)

	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	written := make(chan struct{})
	go func() {
		defer close(written)
		defer cancel() // a dead receiver ends the stream
		writeFrames(ctx, rc.Flush, w, s)
	}()
	_ = r.forward(ctx, pool, s, req.Body) // the stream's end, whatever the cause
	cancel()
	<-written
}

// forward reads the stream's frames and queues each for the pool's other
// streams, until the body ends or a frame is malformed.
func (r *Relay) forward(ctx context.Context, pool string, from *stream, body io.Reader) error {
	fr := sharing.NewReader(body)
	var (
		snap sharing.Snapshot
		pl   sharing.Placement
		want sharing.Want
	)
	for ctx.Err() == nil {
		b, err := fr.Next()
		if err != nil {
			return err
		}
		switch b[0] {
		case sharing.TypeSnapshot:
			err = sharing.DecodeSnapshot(b, &snap)
		case sharing.TypePlacement:
			err = sharing.DecodePlacement(b, &pl)
		case sharing.TypeWant:
			err = sharing.DecodeWant(b, &want)
		}
		// Types this relay does not know come from newer replicas and go
		// through unchecked; receivers skip what they do not know.
		if err != nil {
			return fmt.Errorf("pool %s: %w", pool, err)
		}
		frame := binary.AppendUvarint(make([]byte, 0, len(b)+binary.MaxVarintLen32), uint64(len(b)))
		frame = append(frame, b...)
		r.broadcast(pool, from, frame)
	}
	return ctx.Err()
}

func (r *Relay) broadcast(pool string, from *stream, frame []byte) {
	var forwarded, dropped uint64
	r.mu.Lock()
	for s := range r.pools[pool] {
		if s == from || !delivers(from.kind, s.kind) {
			continue
		}
		if s.queued.Add(int64(len(frame))) > streamQueueBytes {
			s.queued.Add(-int64(len(frame)))
			dropped++
			continue
		}
		select {
		case s.out <- frame:
			forwarded++
		default:
			s.queued.Add(-int64(len(frame)))
			dropped++
		}
	}
	r.mu.Unlock()
	if r.obs != nil && forwarded+dropped > 0 {
		r.obs.RelayFrames(forwarded, dropped)
	}
}

// writeFrames writes s's queued frames, flushing whenever the queue runs
// dry.
func writeFrames(ctx context.Context, flush func() error, w io.Writer, s *stream) {
	write := func(f []byte) bool {
		s.queued.Add(-int64(len(f)))
		_, err := w.Write(f)
		return err == nil
	}
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-s.out:
			if !write(f) {
				return
			}
			for more := true; more; {
				select {
				case f = <-s.out:
					if !write(f) {
						return
					}
				default:
					more = false
				}
			}
			if flush() != nil {
				return
			}
		}
	}
}

func (r *Relay) join(pool string, s *stream) {
	r.mu.Lock()
	if r.pools[pool] == nil {
		r.pools[pool] = make(map[*stream]struct{})
	}
	r.pools[pool][s] = struct{}{}
	first := s.kind == local && r.count(pool, local) == 1
	r.mu.Unlock()
	r.observe(s.kind, 1)
	if first {
		r.localChanged()
	}
}

func (r *Relay) leave(pool string, s *stream) {
	r.mu.Lock()
	delete(r.pools[pool], s)
	last := s.kind == local && r.count(pool, local) == 0
	if len(r.pools[pool]) == 0 {
		delete(r.pools, pool)
	}
	r.mu.Unlock()
	r.observe(s.kind, -1)
	if last {
		r.localChanged()
	}
}

func (r *Relay) observe(kind streamKind, delta int) {
	switch {
	case r.obs == nil:
	case kind != local:
		r.obs.RelayPeerLinks(delta)
	case delta > 0:
		r.obs.RelayStreamOpened()
	default:
		r.obs.RelayStreamClosed()
	}
}

// count is the number of pool's streams of kind; r.mu must be held.
func (r *Relay) count(pool string, kind streamKind) int {
	n := 0
	for s := range r.pools[pool] {
		if s.kind == kind {
			n++
		}
	}
	return n
}

// Streams is the number of Envoy streams open on pool (links to and from
// peers not counted).
func (r *Relay) Streams(pool string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count(pool, local)
}

// PeerLinks is the number of open links on pool from other relays (in)
// and to them (out).
func (r *Relay) PeerLinks(pool string) (in, out int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count(pool, fromPeer), r.count(pool, toPeer)
}

// NewServer returns the HTTP server of h: HTTP/2 without TLS (prior
// knowledge, as the filter dials it) beside HTTP/1.1 (for the error
// replies), with pings so the streams of vanished replicas end.
func NewServer(h http.Handler) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: 5 * time.Second,
		HTTP2:             &http.HTTP2Config{SendPingTimeout: 5 * time.Second, PingTimeout: 5 * time.Second},
	}
}

// Serve runs h on lis until ctx ends.
func Serve(ctx context.Context, lis net.Listener, h *Relay) error {
	srv := NewServer(h)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	var err error
	select {
	case <-ctx.Done():
		_ = srv.Close() // streams are endless: nothing to drain
		err = <-served
	case err = <-served:
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("relay: %w", err)
}
