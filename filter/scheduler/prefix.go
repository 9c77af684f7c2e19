package scheduler

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"

	"github.com/inflow-gateway/inflow/filter/pool"
)

var _ Scorer = (*PrefixScorer)(nil)

// Prefix hashing defaults, the EPP's: vLLM's 16-token KV blocks at ~4
// characters per token, and at most 256 blocks (16K characters) hashed.
const (
	DefaultBlockChars = 64
	charsPerToken     = 4
	DefaultMaxBlocks  = 256
)

// PrefixScorer is the EPP's approximate prefix-cache scorer: the prompt is
// cut into blocks chained by hash, and an endpoint scores the fraction of
// leading blocks the index believes it has cached. After the pick, Record
// notes that the primary now has them.
type PrefixScorer struct {
	Index *pool.PrefixIndex
	// Sharing, when not nil, passes each recorded placement on to the
	// pool's other replicas (it does nothing without a relay).
	Sharing *pool.Sharing
	// BlockChars is the block size in prompt bytes; 0 derives it from the
	// first candidate's KV block size (vllm:cache_config_info).
	BlockChars int
	MaxBlocks  int
}

// Score implements Scorer.
func (p *PrefixScorer) Score(c *Cycle, cands []Candidate, out []float64) {
	block := p.BlockChars
	if block <= 0 {
		block = DefaultBlockChars
		if bs := cands[0].Metrics.BlockSize; bs > 0 {
			block = bs * charsPerToken
		}
	}
	c.hashes = HashPrompt(c.hashes[:0], &c.block, c.Input, block, p.MaxBlocks)
	clear(out)
	if len(c.hashes) == 0 {
		return
	}
	if p.Index.Match(c.hashes, &c.match) == 0 {
		return
	}
	counts := c.match.Counts
	total := float64(len(c.hashes))
	for i, cd := range cands {
		if s := cd.Endpoint.Slot(); s >= 0 && s < len(counts) {
			out[i] = float64(counts[s]) / total
		}
	}
}

// Record adds the cycle's blocks to ep's entry in the index and returns
// how many leading blocks ep was believed to hold before.
func (p *PrefixScorer) Record(c *Cycle, ep *pool.Endpoint) (matched int) {
	if len(c.hashes) == 0 {
		return 0
	}
	slot := ep.Slot()
	if slot >= 0 && slot < len(c.match.Counts) {
		matched = int(c.match.Counts[slot])
	}
	p.Index.Record(slot, c.hashes, &c.match)
	p.Sharing.Placed(ep, c.hashes, matched)
	return matched
}

// HashPrompt appends the block hash chain of in's prompt to dst, as the
// EPP computes it: h0 = xxhash64(model + cache_salt), then for each full
// block h_i = xxhash64(block_i || LE64(h_{i-1})), at most maxBlocks of
// them; a trailing partial block is not hashed. The prompt parts are one
// stream: a block may span parts. buf is scratch space, grown as needed.
func HashPrompt(dst []uint64, buf *[]byte, in *Input, blockChars, maxBlocks int) []uint64 {
	if maxBlocks <= 0 {
		maxBlocks = DefaultMaxBlocks
	}
	if cap(*buf) < blockChars+8 {
		*buf = make([]byte, blockChars+8)
	}
	b := (*buf)[:blockChars+8]
	prev := seedHash(in.Model, in.CacheSalt)
	limit := len(dst) + maxBlocks
	n := 0
	for _, part := range in.Prompt {
		for len(part) > 0 {
			k := copy(b[n:blockChars], part)
			n += k
			part = part[k:]
			if n < blockChars {
				continue
			}
			binary.LittleEndian.PutUint64(b[blockChars:], prev)
			prev = xxhash.Sum64(b)
			dst = append(dst, prev)
			if len(dst) == limit {
				return dst
			}
			n = 0
		}
	}
	return dst
}

// seedHash is xxhash64(model + salt) without building the concatenation.
func seedHash(model, salt string) uint64 {
	if salt == "" {
		return xxhash.Sum64String(model)
	}
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(model) // never fails
	_, _ = d.WriteString(salt)
	return d.Sum64()
}
