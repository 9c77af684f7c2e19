package relay

import "testing"

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
