package pool

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// chain returns n distinct fake block hashes starting at base.
func chain(base uint64, n int) []uint64 {
	h := make([]uint64, n)
	for i := range h {
		h[i] = base*1_000_003 + uint64(i)*7919 + 1
	}
	return h
}

func newIndex(capacity, slots int) *PrefixIndex {
	ix := NewPrefixIndex(capacity)
	for s := range slots {
		ix.AddServer(s)
	}
	return ix
}

func match(ix *PrefixIndex, hashes []uint64) (*PrefixMatch, int) {
	pm := new(PrefixMatch)
	return pm, ix.Match(hashes, pm)
}

func TestPrefixIndexMatch(t *testing.T) {
	ix := newIndex(100, 3)
	a := chain(1, 10)
	ix.Record(0, a, nil)            // slot 0 holds all of a
	ix.Record(1, a[:4], nil)        // slot 1 holds its first 4 blocks
	ix.Record(2, chain(2, 10), nil) // slot 2 holds something else

	tests := []struct {
		name   string
		hashes []uint64
		want   []uint16
		best   int
	}{
		{"full and partial", a, []uint16{10, 4, 0}, 10},
		{"shorter prompt", a[:6], []uint16{6, 4, 0}, 6},
		{"one block", a[:1], []uint16{1, 1, 0}, 1},
		{"unknown", chain(3, 5), []uint16{0, 0, 0}, 0},
		{"empty", nil, []uint16{0, 0, 0}, 0},
		{"diverges after 7", append(append([]uint64{}, a[:7]...), chain(4, 3)...), []uint16{7, 4, 0}, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pm, best := match(ix, tt.hashes)
			if best != tt.best {
				t.Errorf("best = %d, want %d", best, tt.best)
			}
			for s, w := range tt.want {
				if pm.Counts[s] != w {
					t.Errorf("slot %d: %d leading blocks, want %d", s, pm.Counts[s], w)
				}
			}
		})
	}
}

// TestPrefixIndexMatchesLinearScan checks bisection against the EPP's
// block-by-block scan on random histories: many prompts sharing prefixes,
// recorded on random servers with a small LRU so evictions happen.
func TestPrefixIndexMatchesLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const slots = 5
	ix := newIndex(40, slots)
	var prompts [][]uint64
	for range 300 {
		var p []uint64
		if len(prompts) > 0 && r.IntN(3) > 0 { // extend or branch off an earlier prompt
			old := prompts[r.IntN(len(prompts))]
			p = append(p, old[:r.IntN(len(old)+1)]...)
		}
		for range 1 + r.IntN(8) {
			p = append(p, r.Uint64())
		}
		prompts = append(prompts, p)
		pm, _ := match(ix, p)
		ix.Record(r.IntN(slots), p, pm)

		q := prompts[r.IntN(len(prompts))]
		got, _ := match(ix, q)
		for s := range slots {
			if want := linearMatch(ix, s, q); int(got.Counts[s]) != want {
				t.Fatalf("slot %d: bisection %d, linear scan %d", s, got.Counts[s], want)
			}
		}
	}
}

func linearMatch(ix *PrefixIndex, slot int, hashes []uint64) int {
	for i, h := range hashes {
		sh := ix.shard(h)
		sh.mu.Lock()
		hs := sh.m[h]
		_, ok := hs.find(uint16(slot + 1))
		sh.mu.Unlock()
		if !ok {
			return i
		}
	}
	return len(hashes)
}

func TestPrefixIndexEviction(t *testing.T) {
	ix := newIndex(8, 1)
	a, b := chain(1, 6), chain(2, 6)
	ix.Record(0, a, nil)
	if n := ix.Len(); n != 6 {
		t.Fatalf("Len = %d, want 6", n)
	}
	// 6 more blocks into a capacity of 8 evict 4 of a's, tail first: the
	// server keeps a's first 2 blocks, as vLLM keeps a prefix.
	ix.Record(0, b, nil)
	if n := ix.Len(); n != 8 {
		t.Fatalf("Len = %d, want 8 (capacity)", n)
	}
	if pm, _ := match(ix, a); pm.Counts[0] != 2 {
		t.Errorf("a: %d leading blocks after eviction, want 2", pm.Counts[0])
	}
	if pm, _ := match(ix, b); pm.Counts[0] != 6 {
		t.Errorf("b: %d leading blocks, want 6", pm.Counts[0])
	}
	// Using a again refreshes it: now b's tail goes.
	ix.Record(0, a, nil)
	if pm, _ := match(ix, a); pm.Counts[0] != 6 {
		t.Errorf("a: %d leading blocks after reuse, want 6", pm.Counts[0])
	}
	if pm, _ := match(ix, b); pm.Counts[0] != 2 {
		t.Errorf("b: %d leading blocks, want 2", pm.Counts[0])
	}
	// Every evicted hash left the shared map too.
	total := 0
	for i := range ix.shards {
		total += len(ix.shards[i].m)
	}
	if total != 8 {
		t.Errorf("shared map holds %d hashes, want 8", total)
	}
}

func TestPrefixIndexPurge(t *testing.T) {
	ix := newIndex(100, 2)
	a := chain(1, 5)
	ix.Record(0, a, nil)
	ix.Record(1, a, nil)
	ix.Purge(0)
	pm, _ := match(ix, a)
	if pm.Counts[0] != 0 || pm.Counts[1] != 5 {
		t.Errorf("after purge counts = %v, want [0 5]", pm.Counts)
	}
	ix.Record(0, a, nil) // purged slots are ignored until re-added
	if pm, _ := match(ix, a); pm.Counts[0] != 0 {
		t.Errorf("purged slot recorded: %v", pm.Counts)
	}
	ix.AddServer(0) // reuse starts empty
	if pm, _ := match(ix, a); pm.Counts[0] != 0 {
		t.Errorf("reused slot inherited blocks: %v", pm.Counts)
	}
	if n := ix.Len(); n != 5 {
		t.Errorf("Len = %d, want 5", n)
	}
}

func TestPrefixIndexManyHolders(t *testing.T) {
	ix := newIndex(10, 7) // more holders than the inline entries
	a := chain(1, 3)
	for s := range 7 {
		ix.Record(s, a, nil)
	}
	pm, _ := match(ix, a)
	for s := range 7 {
		if pm.Counts[s] != 3 {
			t.Errorf("slot %d: %d, want 3", s, pm.Counts[s])
		}
	}
	ix.Purge(5)
	pm, _ = match(ix, a)
	if pm.Counts[5] != 0 || pm.Counts[6] != 3 {
		t.Errorf("after purging 5: %v", pm.Counts)
	}
}

// TestPrefixIndexConcurrent runs matches, records and purges from several
// goroutines; run with -race. The invariant checked at the end is that the
// shared map and the LRUs agree.
func TestPrefixIndexConcurrent(t *testing.T) {
	const slots = 4
	ix := newIndex(64, slots)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			pm := new(PrefixMatch)
			for i := range 2000 {
				p := chain(uint64(r.IntN(20)), 1+r.IntN(12))
				ix.Match(p, pm)
				ix.Record(r.IntN(slots), p, pm)
				if g == 0 && i%500 == 499 {
					ix.Purge(3)
					ix.AddServer(3)
				}
			}
		})
	}
	wg.Wait()
	pairs := 0
	for i := range ix.shards {
		for _, hs := range ix.shards[i].m {
			for _, id := range hs.ids {
				if id != 0 {
					pairs++
				}
			}
			pairs += len(hs.more)
		}
	}
	if n := ix.Len(); pairs != n {
		t.Errorf("shared map holds %d (block, server) pairs, LRUs %d", pairs, n)
	}
}
