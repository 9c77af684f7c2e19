package relay_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/relay"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// startPeered starts one relay per observer, each linked with every
// relay's address, its own among them (as a headless Service lists every
// control-plane pod). stops[i] stops relay i and its links.
func startPeered(t *testing.T, obs ...relay.Observer) (addrs []string, hs []*relay.Relay, stops []func()) {
	t.Helper()
	for _, o := range obs {
		addr, h, stop := startRelay(t, "127.0.0.1:0", o)
		addrs, hs, stops = append(addrs, addr), append(hs, h), append(stops, stop)
	}
	for i, h := range hs {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Peer(ctx, addrs) }()
		stopServer := stops[i]
		stopped := false
		stops[i] = func() {
			if !stopped {
				stopped = true
				cancel()
				if err := <-done; err != nil {
					t.Errorf("relay %d: Peer: %v", i, err)
				}
				stopServer()
			}
		}
		t.Cleanup(stops[i])
	}
	return addrs, hs, stops
}

// Three control-plane replicas, each with its relay, and an Envoy replica
// on each (as a Service spreads them): a conversation started through one
// continues through another where its prefix is cached, every frame
// reaches every replica once (a peer's frames are not passed on to other
// peers), and one scrape of a server still serves every replica.
func TestReplicasOnDifferentRelaysShareThroughThePeerLinks(t *testing.T) {
	addrs, _ := servers(t, 4)
	m := &admin.Metrics{}
	relays, hs, _ := startPeered(t, m, nil, nil)
	a, b, c := newReplica(t, addrs, relays[0]), newReplica(t, addrs, relays[1]), newReplica(t, addrs, relays[2])
	for _, r := range []*replica{a, b, c} {
		r.waitReady(t, true)
	}
	poll.Eventually(t, "every relay linked with both others, both ways", func() bool {
		for _, h := range hs {
			if in, out := h.PeerLinks("gpu"); in != 2 || out != 2 {
				return false
			}
		}
		return true
	})
	shareConversations(t, a, b, 0, 6)
	shareConversations(t, b, c, 10, 6)
	shareConversations(t, c, a, 20, 6)

	// Each replica placed 12 picks (6 first turns, 6 second); each must
	// have received the other two's 24, no more (a want's answer would be
	// counted too, so there must be none).
	poll.Eventually(t, "every placement delivered", func() bool {
		for _, r := range []*replica{a, b, c} {
			if r.stats().Shared.PlacementsReceived < 24 {
				return false
			}
		}
		return true
	})
	a.pick(t, conversation(30, 1)) // one more, after which nothing earlier is still in flight
	poll.Eventually(t, "the last placement delivered", func() bool {
		return b.stats().Shared.PlacementsReceived >= 25 && c.stats().Shared.PlacementsReceived >= 25
	})
	for name, r := range map[string]*replica{"a": a, "b": b, "c": c} {
		st := r.stats().Shared
		want := uint64(24)
		if name != "a" {
			want = 25
		}
		if st.PlacementsReceived != want || st.WantsSent != 0 || st.PlacementsUnmatched != 0 {
			t.Errorf("replica %s: received %d placements, want %d exactly (wants sent %d, unmatched %d)",
				name, st.PlacementsReceived, want, st.WantsSent, st.PlacementsUnmatched)
		}
	}
	poll.Eventually(t, "scrapes made by one replica serve the others", func() bool {
		for _, r := range []*replica{a, b, c} {
			if st := r.stats(); st.ScrapesSkipped == 0 || st.Shared.SnapshotsReceived == 0 {
				return false
			}
		}
		return true
	})
	var text bytes.Buffer
	if err := m.WriteText(&text); err != nil ||
		!strings.Contains(text.String(), "inflow_controlplane_relay_streams_active 1\n") ||
		!strings.Contains(text.String(), "inflow_controlplane_relay_peer_links_active 4\n") {
		t.Errorf("relay metrics (%v):\n%s", err, text.String())
	}
}

// A control-plane replica that goes away takes its Envoys' shared state
// with it (they work alone until they redial the Service and land on
// another), and the others go on sharing among themselves; a pool's links
// close once no Envoy stream of this relay uses it.
func TestPeersGoOnSharingWhenOneGoes(t *testing.T) {
	addrs, _ := servers(t, 3)
	relays, hs, stops := startPeered(t, nil, nil, nil)
	a, b, c := newReplica(t, addrs, relays[0]), newReplica(t, addrs, relays[1]), newReplica(t, addrs, relays[2])
	for _, r := range []*replica{a, b, c} {
		r.waitReady(t, true)
	}
	stops[2]()
	c.waitReady(t, false)
	poll.Eventually(t, "the links to the gone relay closed", func() bool {
		in0, out0 := hs[0].PeerLinks("gpu")
		in1, out1 := hs[1].PeerLinks("gpu")
		return in0 == 1 && out0 == 1 && in1 == 1 && out1 == 1
	})
	shareConversations(t, a, b, 0, 4)
	shareConversations(t, b, a, 10, 4)

	b.set.Release()
	b.mgr.Close()
	poll.Eventually(t, "relay 1 has no Envoy on the pool: its links close", func() bool {
		in0, out0 := hs[0].PeerLinks("gpu")
		in1, out1 := hs[1].PeerLinks("gpu")
		return in0 == 0 && out0 == 1 && in1 == 1 && out1 == 0
	})
}
