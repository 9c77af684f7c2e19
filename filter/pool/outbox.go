package pool

import (
	"sync"
	"sync/atomic"
)

// maxQueuedPlacements bounds what waits for the relay: at 20 ms between
// sends it is ~200,000 picks per second. Beyond it placements are dropped
// (counted): peers then know less, as if they ran alone.
const maxQueuedPlacements = 4096

// outbox holds the placements this replica made until the sharing client
// sends them. The pick path pushes onto a lock-free stack (one compare and
// swap, records from a sync.Pool, so nothing is allocated once warm); the
// sender takes the whole stack at once. Nothing is queued while no relay
// connection is up.
type outbox struct {
	head   atomic.Pointer[placed]
	queued atomic.Int32
	open   atomic.Bool
}

// placed is one queued placement: ep was sent a chain of which it held the
// first depth blocks (the last being parent), then hashes.
type placed struct {
	ep     *Endpoint
	depth  int
	parent uint64
	hashes []uint64
	next   *placed
}

var placedPool = sync.Pool{New: func() any { return new(placed) }}

// push queues a placement of hashes on ep, of which ep held the first
// held; it reports false when the placement was dropped for lack of room.
func (o *outbox) push(ep *Endpoint, hashes []uint64, held int) bool {
	if o.queued.Add(1) > maxQueuedPlacements {
		o.queued.Add(-1)
		return false
	}
	held = max(0, min(held, len(hashes)))
	p := placedPool.Get().(*placed)
	p.ep, p.depth, p.parent = ep, held, 0
	if held > 0 {
		p.parent = hashes[held-1]
	}
	p.hashes = append(p.hashes[:0], hashes[held:]...)
	for {
		old := o.head.Load()
		p.next = old
		if o.head.CompareAndSwap(old, p) {
			return true
		}
	}
}

// take appends every queued placement to dst, oldest first, and empties
// the queue. Hand each back with recycle once sent.
func (o *outbox) take(dst []*placed) []*placed {
	first := len(dst)
	for p := o.head.Swap(nil); p != nil; p = p.next {
		dst = append(dst, p)
	}
	taken := dst[first:]
	for i, j := 0, len(taken)-1; i < j; i, j = i+1, j-1 {
		taken[i], taken[j] = taken[j], taken[i]
	}
	o.queued.Add(-int32(len(taken)))
	return dst
}

// discard drops everything queued (the connection it was for is gone).
func (o *outbox) discard() {
	var buf [64]*placed
	for {
		taken := o.take(buf[:0])
		if len(taken) == 0 {
			return
		}
		for _, p := range taken {
			recycle(p)
		}
	}
}

func recycle(p *placed) {
	p.ep, p.next = nil, nil
	placedPool.Put(p)
}
