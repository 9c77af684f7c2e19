package sim

import (
	"container/list"
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// charsPerToken is the prompt-length estimate the simulator and GIE's approximate
// prefix-cache scorer share: one token per four bytes of prompt text.
const charsPerToken = 4

// estimateTokens returns the prompt tokens for n bytes of prompt text. It is at least 1
// because a real tokenizer adds a BOS token even to an empty prompt.
func estimateTokens(n int) int {
	return max(1, (n+charsPerToken-1)/charsPerToken)
}

// blocksFor is the number of KV blocks that hold tokens tokens.
func blocksFor(tokens, blockSize int) int {
	return (tokens + blockSize - 1) / blockSize
}

// blockHashes chain-hashes the full blocks of text (blockSize*charsPerToken bytes each),
// the way GIE's prefix scorer does: h0 = xxhash64(seed), h_i = xxhash64(block_i ||
// LE64(h_{i-1})). A trailing partial block is not hashed: vLLM only caches full blocks.
// The seed carries the model (or adapter) name and cache_salt, so adapters and salts
// never share cache entries, as in vLLM where both are part of the block hash.
func blockHashes(seed string, text []byte, blockSize int) []uint64 {
	blockBytes := blockSize * charsPerToken
	n := len(text) / blockBytes
	if n == 0 {
		return nil
	}
	hashes := make([]uint64, n)
	prev := xxhash.Sum64String(seed)
	d := xxhash.New()
	var le [8]byte
	for i := range n {
		d.Reset()
		_, _ = d.Write(text[i*blockBytes : (i+1)*blockBytes]) // xxhash.Digest.Write never fails
		binary.LittleEndian.PutUint64(le[:], prev)
		_, _ = d.Write(le[:])
		prev = d.Sum64()
		hashes[i] = prev
	}
	return hashes
}

// kvBlock is one physical block that holds a hashed (cacheable) prompt block.
type kvBlock struct {
	hash uint64
	refs int           // running sequences using the block
	elem *list.Element // position in kvPool.evictable while refs == 0
}

// kvPool is the KV cache: capacity physical blocks, shared by running sequences
// (blocks with refs > 0, plus private blocks for partial prompt blocks and decode
// output) and by cached prefixes nobody uses (refs == 0), which are evicted least
// recently used first when a block is needed. Not safe for concurrent use: the engine
// holds its lock around every call.
type kvPool struct {
	capacity  int
	blocks    map[uint64]*kvBlock
	evictable *list.List // *kvBlock with refs == 0; front = least recently used
	used      int        // physical blocks referenced by running sequences
}

func newKVPool(capacity int) *kvPool {
	return &kvPool{capacity: capacity, blocks: make(map[uint64]*kvBlock), evictable: list.New()}
}

// prefixMatch describes how a prompt's hashed blocks meet the cache.
type prefixMatch struct {
	leading   int // blocks cached before the first miss: these skip prefill
	present   int // blocks cached anywhere in the chain: these need no new memory
	evictable int // present blocks nobody uses yet: acquiring them pins them
}

// lookup reports how hashes match the cache without changing it.
func (p *kvPool) lookup(hashes []uint64) prefixMatch {
	var m prefixMatch
	for i, h := range hashes {
		b, ok := p.blocks[h]
		if !ok {
			continue
		}
		if i == m.leading {
			m.leading++
		}
		m.present++
		if b.refs == 0 {
			m.evictable++
		}
	}
	return m
}

// acquire references every block of hashes, allocating the missing ones, and returns
// the leading cached blocks. The caller has checked that the pool has room.
func (p *kvPool) acquire(hashes []uint64) int {
	leading := 0
	for i, h := range hashes {
		if b, ok := p.blocks[h]; ok {
			if i == leading {
				leading++
			}
			if b.refs == 0 {
				p.evictable.Remove(b.elem)
				b.elem = nil
				p.used++
			}
			b.refs++
			continue
		}
		p.makeRoom()
		p.blocks[h] = &kvBlock{hash: h, refs: 1}
		p.used++
	}
	return leading
}

// allocPrivate takes n blocks that are never shared (partial prompt block, decode output).
func (p *kvPool) allocPrivate(n int) {
	for range n {
		p.makeRoom()
		p.used++
	}
}

// release drops one reference to each block of hashes and frees private blocks.
// Blocks are released tail first so that, as in vLLM's free-block queue, the end of a
// prompt is evicted before its (more widely shared) beginning.
func (p *kvPool) release(hashes []uint64, private int) {
	p.used -= private
	for i := len(hashes) - 1; i >= 0; i-- {
		b := p.blocks[hashes[i]]
		b.refs--
		if b.refs == 0 {
			b.elem = p.evictable.PushBack(b)
			p.used--
		}
	}
}

// makeRoom evicts the least recently used unreferenced block when the pool is full.
func (p *kvPool) makeRoom() {
	if p.used+p.evictable.Len() < p.capacity {
		return
	}
	front := p.evictable.Front()
	if front == nil {
		// The engine's admission check reserves every block a sequence can need, so a
		// full pool with nothing evictable is a bug in that check, not a load condition.
		panic("vllmsim: KV pool over-committed")
	}
	b := p.evictable.Remove(front).(*kvBlock)
	delete(p.blocks, b.hash)
}

// cached returns the number of blocks that hold a prefix nobody is using.
func (p *kvPool) cached() int { return p.evictable.Len() }
