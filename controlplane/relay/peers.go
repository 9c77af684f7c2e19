package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/inflow-gateway/inflow/filter/sharing"
)

// Several control-plane replicas (a Deployment behind one Service) each
// serve a relay, and each Envoy's stream lands on one of them. So that the
// Envoys on different relays still share, each relay pushes its own
// Envoys' frames to every peer over a link it dials (one stream per pool
// and peer, its request body only), and a relay delivers what arrives on a
// link to its own Envoys and no further: a frame crosses at most one link,
// and none comes back. A pool's links exist while the relay has Envoy
// streams on it.

// peerHeader marks a link from another relay; its value is that relay's
// id, so a relay that finds its own address among its peers knows it.
const peerHeader = "Inflow-Relay-Peer"

type streamKind uint8

const (
	local    streamKind = iota // an Envoy replica's stream
	fromPeer                   // a link another relay dialled: frames in, none out
	toPeer                     // a link this relay dialled: frames out
)

// delivers says whether a frame that arrived on a stream of kind from goes
// out on a stream of kind to.
func delivers(from, to streamKind) bool {
	switch to {
	case local:
		return from != toPeer // nothing arrives on those
	case toPeer:
		return from == local // a peer's frames already went to all its peers
	}
	return false
}

const (
	// How often the peer names are looked up again: a new control-plane
	// pod is linked within this, a gone one is dropped.
	peerResolveInterval = 5 * time.Second
	minPeerRedial       = 100 * time.Millisecond
	maxPeerRedial       = 5 * time.Second
)

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Peer links this relay with the relays at peers (host:port each; a name is
// looked up every few seconds and every address it has is a peer, as a
// headless Service gives every control-plane pod) until ctx ends. peers may
// include this relay's own addresses: they are recognised and skipped.
func (r *Relay) Peer(ctx context.Context, peers []string) error {
	for _, p := range peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return fmt.Errorf("relay peer %q: %w", p, err)
		}
	}
	client := &http.Client{Transport: sharing.NewTransport()}
	defer client.CloseIdleConnections()
	var (
		wg    sync.WaitGroup
		links = map[[2]string]context.CancelFunc{} // pool, address
		self  = map[string]bool{}
		selfc = make(chan string, 1)
		addrs = lookupPeers(ctx, peers, nil) // peer name -> its addresses
	)
	defer func() {
		for _, cancel := range links {
			cancel()
		}
		wg.Wait()
	}()
	tick := time.NewTicker(peerResolveInterval)
	defer tick.Stop()
	for {
		want := map[[2]string]bool{}
		for _, pool := range r.localPools() {
			for _, as := range addrs {
				for _, a := range as {
					if !self[a] {
						want[[2]string{pool, a}] = true
					}
				}
			}
		}
		for k, cancel := range links {
			if !want[k] {
				cancel()
				delete(links, k)
			}
		}
		for k := range want {
			if links[k] == nil {
				lctx, cancel := context.WithCancel(ctx)
				links[k] = cancel
				wg.Go(func() { r.linkLoop(lctx, client, k[0], k[1], selfc) })
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			addrs = lookupPeers(ctx, peers, addrs)
		case <-r.local:
		case a := <-selfc:
			self[a] = true
		}
	}
}

// lookupPeers looks up every peer name again; a name that cannot be
// looked up keeps its last addresses.
func lookupPeers(ctx context.Context, peers []string, last map[string][]string) map[string][]string {
	out := make(map[string][]string, len(peers))
	for _, p := range peers {
		host, port, _ := net.SplitHostPort(p)
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ips, err := net.DefaultResolver.LookupHost(lctx, host)
		cancel()
		if err != nil {
			out[p] = last[p]
			continue
		}
		for _, ip := range ips {
			out[p] = append(out[p], net.JoinHostPort(ip, port))
		}
	}
	return out
}

// localPools are the pools with at least one Envoy stream.
func (r *Relay) localPools() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var pools []string
	for pool := range r.pools {
		if r.count(pool, local) > 0 {
			pools = append(pools, pool)
		}
	}
	return pools
}

// localChanged wakes Peer to add or remove a pool's links.
func (r *Relay) localChanged() {
	select {
	case r.local <- struct{}{}:
	default:
	}
}

// linkLoop keeps a link to the relay at addr open until ctx ends,
// redialling with backoff; it ends for good when addr is this relay.
func (r *Relay) linkLoop(ctx context.Context, client *http.Client, pool, addr string, self chan<- string) {
	wait := minPeerRedial
	for {
		began := time.Now()
		isSelf, _ := r.link(ctx, client, pool, addr) // a broken link is retried, not an error
		if isSelf {
			select {
			case self <- addr:
			case <-ctx.Done():
			}
			return
		}
		if time.Since(began) > 10*time.Second {
			wait = minPeerRedial
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxPeerRedial)
	}
}

// link runs one link: this relay's Envoys' frames on pool to the relay at
// addr, until either side ends it.
func (r *Relay) link(ctx context.Context, client *http.Client, pool, addr string) (isSelf bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	up, upWriter := io.Pipe()
	defer upWriter.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+sharing.Path+url.PathEscape(pool), up)
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", sharing.ContentType)
	req.Header.Set(peerHeader, r.id)
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusConflict:
		return true, nil
	default:
		return false, fmt.Errorf("relay peer %s: status %d", addr, resp.StatusCode)
	}
	s := newStream(toPeer)
	r.join(pool, s)
	defer r.leave(pool, s)
	go func() {
		_, _ = io.Copy(io.Discard, resp.Body) // nothing comes back: the end is the peer closing
		cancel()
	}()
	writeFrames(ctx, func() error { return nil }, upWriter, s)
	return false, ctx.Err()
}
