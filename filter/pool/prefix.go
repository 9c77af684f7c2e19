package pool

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/inflow-gateway/inflow/filter/config"
)

// prefixShards stripes the hash -> servers map so that workers looking up
// and recording different blocks rarely meet on a lock. A power of two so
// the shard is a mask of the hash.
const prefixShards = 64

// PrefixIndex approximates which servers hold which prompt blocks in their
// KV cache, as the EPP's approximate prefix-cache plugin does: block hashes
// map to the servers last sent them, and each server keeps an LRU of at most
// capacity hashes, since its real cache is bounded too.
//
// Two choices keep a pick cheap; both rest on one invariant: a block is
// never less recently used than its prefix (Record refreshes a prompt's
// blocks deepest first). Then LRU eviction takes chain tails first, as
// vLLM's own cache does, and every server holds a prefix-closed set of
// each chain, so:
//   - Match finds each server's leading match by bisection, a handful of
//     map lookups per prompt instead of one per block;
//   - LRU nodes link to their parent block, so Record reaches the blocks a
//     server already holds by walking links, not by lookups.
//
// Servers are small integer slots (Endpoint.Slot), so per-pick state lives
// in slices. The hash -> holders map is striped over shards, each lock held
// for one map access; a holder entry stores the hash's node in the
// server's LRU, so the LRU needs no map of its own.
type PrefixIndex struct {
	shards   [prefixShards]prefixShard
	capacity int

	mu   sync.Mutex                   // serialises changes to lrus
	lrus atomic.Pointer[[]*serverLRU] // by slot; copy-on-write
}

type prefixShard struct {
	mu sync.Mutex
	m  map[uint64]holders
	_  [48]byte // keep neighbouring shards' locks off one cache line
}

// holders is the set of slots that hold a block. Inline entries cover the
// common case without allocating; a block shared by more servers spills
// into more.
type holders struct {
	ids   [4]uint16 // slot+1; 0 is a free entry
	nodes [4]int32  // the hash's node in that slot's LRU
	more  []holder
}

type holder struct {
	id   uint16
	node int32
}

// PrefixMatch is per-pick scratch for Match and Record; reuse it.
type PrefixMatch struct {
	// Counts[slot] is how many leading blocks slot holds.
	Counts  []uint16
	deepest []int32  // by slot: LRU node of block Counts[slot]-1
	ids     []uint16 // bisection work list
	nodes   []int32  // Record: node of each block
}

// NewPrefixIndex returns an empty index whose servers remember at most
// capacity block hashes each (config.DefaultLRUCapacity when capacity <= 0).
func NewPrefixIndex(capacity int) *PrefixIndex {
	if capacity <= 0 {
		capacity = config.DefaultLRUCapacity
	}
	ix := &PrefixIndex{capacity: capacity}
	for i := range ix.shards {
		ix.shards[i].m = make(map[uint64]holders)
	}
	ix.lrus.Store(new([]*serverLRU))
	return ix
}

// Slots is one more than the largest slot the index has seen.
func (ix *PrefixIndex) Slots() int { return len(*ix.lrus.Load()) }

// Match fills pm.Counts (resized to Slots() and zeroed) with how many
// leading hashes each slot holds, and returns the longest match.
func (ix *PrefixIndex) Match(hashes []uint64, pm *PrefixMatch) int {
	n := ix.Slots()
	resetMatch(pm, n)
	if len(hashes) == 0 {
		return 0
	}
	// Everyone holding block 0 has a match in [1, len(hashes)].
	sh := ix.shard(hashes[0])
	ids := pm.ids[:0]
	sh.mu.Lock()
	hs := sh.m[hashes[0]]
	for k, id := range hs.ids {
		if id != 0 && int(id) <= n {
			ids = append(ids, id)
			pm.Counts[id-1], pm.deepest[id-1] = 1, hs.nodes[k]
		}
	}
	for _, e := range hs.more {
		if int(e.id) <= n {
			ids = append(ids, e.id)
			pm.Counts[e.id-1], pm.deepest[e.id-1] = 1, e.node
		}
	}
	sh.mu.Unlock()
	pm.ids = ids
	ix.bisect(hashes, ids, 1, len(hashes), pm)
	best := 0
	for _, id := range ids {
		best = max(best, int(pm.Counts[id-1]))
	}
	return best
}

// bisect narrows the matches of ids, all known to be in [lo, hi], by
// looking up the block at the midpoint: holders of block mid-1 match at
// least mid, the others less.
func (ix *PrefixIndex) bisect(hashes []uint64, ids []uint16, lo, hi int, pm *PrefixMatch) {
	for len(ids) > 0 && lo < hi {
		mid := (lo + hi + 1) / 2
		h := hashes[mid-1]
		sh := ix.shard(h)
		in := 0 // ids[:in] hold block mid-1
		sh.mu.Lock()
		hs := sh.m[h]
		for i, id := range ids {
			if node, ok := hs.find(id); ok {
				pm.Counts[id-1], pm.deepest[id-1] = uint16(mid), node
				ids[in], ids[i] = ids[i], ids[in]
				in++
			}
		}
		sh.mu.Unlock()
		ix.bisect(hashes, ids[:in], mid, hi, pm)
		ids, hi = ids[in:], mid-1
	}
}

// Record notes that slot was sent a prompt made of hashes, so it now caches
// those blocks. pm, from the Match of the same hashes, saves lookups; it
// may be nil. Unknown or purged slots are ignored.
func (ix *PrefixIndex) Record(slot int, hashes []uint64, pm *PrefixMatch) {
	lrus := *ix.lrus.Load()
	if slot < 0 || slot >= len(lrus) || lrus[slot] == nil || len(hashes) == 0 {
		return
	}
	l := lrus[slot]
	id := uint16(slot + 1)
	if pm == nil {
		pm = new(PrefixMatch)
	}
	if cap(pm.nodes) < len(hashes) {
		pm.nodes = make([]int32, len(hashes))
	}
	nodes := pm.nodes[:len(hashes)]
	for i := range nodes {
		nodes[i] = -1
	}
	// Holder entries of this slot change only under its LRU lock, so an
	// eviction can never overtake the insertion of the same hash.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		return
	}
	// Blocks Match found: walk parent links down from the deepest. The
	// links may be stale; each step is checked against the hash.
	if slot < len(pm.Counts) && int(pm.Counts[slot]) <= len(hashes) {
		node := pm.deepest[slot]
		for i := int(pm.Counts[slot]) - 1; i >= 0 && node >= 0 && int(node) < len(l.nodes); i-- {
			if l.nodes[node].hash != hashes[i] {
				break
			}
			nodes[i] = node
			node = l.nodes[node].parent
		}
	}
	// Then look up what the walk did not reach; by prefix closure the
	// held blocks end at the first miss.
	held := 0
	for ; held < len(hashes); held++ {
		if nodes[held] >= 0 {
			continue
		}
		node, ok := ix.shard(hashes[held]).find(id, hashes[held])
		if !ok {
			break
		}
		nodes[held] = node
		if held > 0 { // repair the link the walk could not follow
			l.nodes[node].parent = nodes[held-1]
		}
	}
	if held < len(hashes) {
		// Refresh the held prefix before inserting, so the inserts cannot
		// evict it.
		for i := held - 1; i >= 0; i-- {
			l.touch(nodes[i])
		}
		for i := held; i < len(hashes); i++ {
			parent := int32(-1)
			if i > 0 {
				parent = nodes[i-1]
			}
			nodes[i] = ix.shard(hashes[i]).findOrInsert(l, id, hashes[i], parent, ix)
		}
	}
	// Deepest first, so block 0 ends most recently used.
	for i := len(hashes) - 1; i >= 0; i-- {
		if l.nodes[nodes[i]].hash == hashes[i] { // else evicted by this very prompt
			l.touch(nodes[i])
		}
	}
}

// RecordAfter records a placement another replica made: slot was sent a
// chain whose first depth blocks it already held, the last of them parent,
// followed by suffix (a sharing.Placement). The held blocks are found by
// walking parent links up from parent's node (Chain), so the sender need
// not send them. It reports false and records nothing when this index does
// not have slot holding that prefix: this replica never learnt it (it
// joined later, or the relay was down), and a suffix without it would
// break the index's prefix closure. pm and chain are scratch space.
func (ix *PrefixIndex) RecordAfter(slot, depth int, parent uint64, suffix []uint64, pm *PrefixMatch, chain *[]uint64) bool {
	if depth <= 0 {
		if len(suffix) == 0 || !ix.hasSlot(slot) {
			return false
		}
		resetMatch(pm, ix.Slots())
		ix.Record(slot, suffix, pm)
		return true
	}
	c, node, ok := ix.chain(slot, depth, parent, slices.Grow((*chain)[:0], depth+len(suffix)))
	if !ok {
		return false
	}
	c = append(c, suffix...)
	*chain = c
	// Hand Record the walk's start, as a Match would have.
	resetMatch(pm, ix.Slots())
	if slot >= len(pm.Counts) {
		return false
	}
	pm.Counts[slot], pm.deepest[slot] = uint16(depth), node
	ix.Record(slot, c, pm)
	return true
}

// Chain appends to dst the first depth block hashes of the chain that
// slot holds ending in parent (block depth-1), found by walking parent
// links; ok is false when slot does not hold such a chain whole.
func (ix *PrefixIndex) Chain(slot, depth int, parent uint64, dst []uint64) (_ []uint64, ok bool) {
	dst, _, ok = ix.chain(slot, depth, parent, dst)
	return dst, ok
}

func (ix *PrefixIndex) chain(slot, depth int, parent uint64, dst []uint64) (_ []uint64, node int32, ok bool) {
	lrus := *ix.lrus.Load()
	if depth <= 0 || slot < 0 || slot >= len(lrus) || lrus[slot] == nil {
		return dst, 0, false
	}
	l := lrus[slot]
	node, ok = ix.shard(parent).find(uint16(slot+1), parent)
	if !ok {
		return dst, 0, false
	}
	first := len(dst)
	dst = slices.Grow(dst, depth)[:first+depth]
	c := dst[first:]
	l.mu.Lock()
	intact := !l.dead
	for i, n := depth-1, node; intact; i-- {
		if n < 0 || int(n) >= len(l.nodes) {
			intact = false
			break
		}
		c[i] = l.nodes[n].hash
		if i == 0 {
			intact = l.nodes[n].parent < 0 // the chain's first block
			break
		}
		n = l.nodes[n].parent
	}
	l.mu.Unlock()
	if !intact || c[depth-1] != parent {
		return dst[:first], 0, false
	}
	return dst, node, true
}

func (ix *PrefixIndex) hasSlot(slot int) bool {
	lrus := *ix.lrus.Load()
	return slot >= 0 && slot < len(lrus) && lrus[slot] != nil
}

// resetMatch sizes pm for n slots with no match.
func resetMatch(pm *PrefixMatch, n int) {
	if cap(pm.Counts) < n {
		pm.Counts, pm.deepest = make([]uint16, n), make([]int32, n)
	}
	pm.Counts, pm.deepest = pm.Counts[:n], pm.deepest[:n]
	clear(pm.Counts)
}

// find returns h's node in slot id's LRU.
func (s *prefixShard) find(id uint16, h uint64) (int32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := s.m[h]
	return hs.find(id)
}

// findOrInsert returns h's node in l, inserting it (and evicting l's least
// recently used hash when full) if l does not hold it. Called with l
// locked. Lookup and insertion share one critical section: the LRU work in
// it is a few slice writes, and it saves a second map lookup.
func (s *prefixShard) findOrInsert(l *serverLRU, id uint16, h uint64, parent int32, ix *PrefixIndex) int32 {
	s.mu.Lock()
	hs := s.m[h]
	if node, ok := hs.find(id); ok {
		s.mu.Unlock()
		l.nodes[node].parent = parent
		return node
	}
	node, evicted, ok := l.insert(h, parent)
	hs.add(id, node)
	s.m[h] = hs
	s.mu.Unlock()
	if ok { // never h itself, so no lock is taken twice
		ix.shard(evicted).remove(evicted, id)
	}
	return node
}

func (hs *holders) find(id uint16) (int32, bool) {
	for k, x := range hs.ids {
		if x == id {
			return hs.nodes[k], true
		}
	}
	for _, e := range hs.more {
		if e.id == id {
			return e.node, true
		}
	}
	return 0, false
}

func (hs *holders) add(id uint16, node int32) {
	for k, x := range hs.ids {
		if x == 0 {
			hs.ids[k], hs.nodes[k] = id, node
			return
		}
	}
	hs.more = append(hs.more, holder{id, node})
}

func (s *prefixShard) remove(h uint64, id uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs, ok := s.m[h]
	if !ok {
		return
	}
	for k, x := range hs.ids {
		if x == id {
			hs.ids[k] = 0
		}
	}
	for i, e := range hs.more {
		if e.id == id {
			last := len(hs.more) - 1
			hs.more[i] = hs.more[last]
			hs.more = hs.more[:last]
			break
		}
	}
	if hs.ids == [4]uint16{} && len(hs.more) == 0 {
		delete(s.m, h)
		return
	}
	s.m[h] = hs
}

// AddServer makes slot known to the index. slot must not be in use.
func (ix *PrefixIndex) AddServer(slot int) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := *ix.lrus.Load()
	next := make([]*serverLRU, max(len(old), slot+1))
	copy(next, old)
	next[slot] = newServerLRU(ix.capacity)
	ix.lrus.Store(&next)
}

// Purge forgets everything slot holds; the slot may then be reused.
func (ix *PrefixIndex) Purge(slot int) {
	ix.mu.Lock()
	old := *ix.lrus.Load()
	if slot < 0 || slot >= len(old) || old[slot] == nil {
		ix.mu.Unlock()
		return
	}
	l := old[slot]
	next := make([]*serverLRU, len(old))
	copy(next, old)
	next[slot] = nil
	ix.lrus.Store(&next)
	ix.mu.Unlock()

	id := uint16(slot + 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dead = true
	for _, n := range l.nodes {
		ix.shard(n.hash).remove(n.hash, id)
	}
	l.nodes = nil
}

// Len is the number of (block, server) pairs the index holds.
func (ix *PrefixIndex) Len() int {
	n := 0
	for _, l := range *ix.lrus.Load() {
		if l != nil {
			l.mu.Lock()
			n += len(l.nodes)
			l.mu.Unlock()
		}
	}
	return n
}

func (ix *PrefixIndex) shard(h uint64) *prefixShard { return &ix.shards[h&(prefixShards-1)] }

// serverLRU is a fixed-capacity LRU list of block hashes: an intrusive
// doubly linked list over a slice, so a full cache evicts by reusing the
// tail node and allocates nothing. Nodes are found through the shard
// holder entries, which store their index.
type serverLRU struct {
	mu         sync.Mutex
	dead       bool
	capacity   int
	nodes      []lruNode
	head, tail int32 // most and least recently used; -1 when empty
}

type lruNode struct {
	hash       uint64
	prev, next int32
	// parent is the node of the previous block of the chain, when known.
	parent int32
}

func newServerLRU(capacity int) *serverLRU {
	return &serverLRU{capacity: capacity, head: -1, tail: -1}
}

// touch marks node i most recently used.
func (l *serverLRU) touch(i int32) {
	if i != l.head {
		l.unlink(i)
		l.pushFront(i)
	}
}

// insert adds h (not yet held) as most recently used, reusing the least
// recently used node when full; it returns the node and the evicted hash.
func (l *serverLRU) insert(h uint64, parent int32) (node int32, evicted uint64, ok bool) {
	if len(l.nodes) < l.capacity {
		node = int32(len(l.nodes))
		l.nodes = append(l.nodes, lruNode{})
	} else {
		node = l.tail
		evicted, ok = l.nodes[node].hash, true
		l.unlink(node)
	}
	l.nodes[node].hash, l.nodes[node].parent = h, parent
	l.pushFront(node)
	return node, evicted, ok
}

func (l *serverLRU) unlink(i int32) {
	n := &l.nodes[i]
	if n.prev >= 0 {
		l.nodes[n.prev].next = n.next
	} else {
		l.head = n.next
	}
	if n.next >= 0 {
		l.nodes[n.next].prev = n.prev
	} else {
		l.tail = n.prev
	}
}

func (l *serverLRU) pushFront(i int32) {
	n := &l.nodes[i]
	n.prev, n.next = -1, l.head
	if l.head >= 0 {
		l.nodes[l.head].prev = i
	}
	l.head = i
	if l.tail < 0 {
		l.tail = i
	}
}
