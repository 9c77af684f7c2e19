package relay

import (
	"slices"
	"testing"
)

// A frame from an Envoy goes to the relay's other Envoys and to its peers;
// a frame from a peer goes to this relay's Envoys only, so none crosses
// two links or comes back; nothing is sent on a link a peer dialled.
func TestDelivers(t *testing.T) {
	kinds := map[streamKind]string{local: "local", fromPeer: "fromPeer", toPeer: "toPeer"}
	want := map[[2]streamKind]bool{
		{local, local}:    true,
		{local, toPeer}:   true,
		{fromPeer, local}: true,
	}
	for from := range kinds {
		for to := range kinds {
			if got := delivers(from, to); got != want[[2]streamKind{from, to}] {
				t.Errorf("delivers(%s, %s) = %v", kinds[from], kinds[to], got)
			}
		}
	}
}

// Every address a peer name has is a peer; a name that cannot be looked
// up (a DNS hiccup) keeps the addresses it had.
func TestLookupPeersKeepsTheLastAddressesOfANameThatFails(t *testing.T) {
	peers := []string{"127.0.0.1:18002", "peers.invalid:18002"}
	last := map[string][]string{"peers.invalid:18002": {"10.0.0.9:18002", "10.0.0.10:18002"}}
	got := lookupPeers(t.Context(), peers, last)
	if len(got) != 2 || !slices.Equal(got[peers[0]], []string{"127.0.0.1:18002"}) || !slices.Equal(got[peers[1]], last[peers[1]]) {
		t.Errorf("got %v", got)
	}
}
