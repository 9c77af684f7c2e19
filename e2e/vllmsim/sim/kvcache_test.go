package sim

import (
	"strings"
	"testing"
)

func TestBlockHashes(t *testing.T) {
	const bs = 4 // 16 bytes per block
	base := strings.Repeat("a", 16) + strings.Repeat("b", 16) + strings.Repeat("c", 16)
	ref := blockHashes("m\x00", []byte(base), bs)
	if len(ref) != 3 {
		t.Fatalf("got %d blocks for 48 bytes, want 3", len(ref))
	}
	tests := []struct {
		name       string
		seed, text string
		wantShared int // leading hashes equal to ref
		wantBlocks int
	}{
		{"same prompt", "m\x00", base, 3, 3},
		{"partial tail block is not hashed", "m\x00", base + "dddd", 3, 3},
		{"shorter than a block", "m\x00", "abc", 0, 0},
		{"diverging second block", "m\x00", base[:16] + strings.Repeat("x", 32), 1, 3},
		{"same content later in the chain differs", "m\x00", strings.Repeat("z", 16) + base[16:], 0, 3},
		{"other model", "other\x00", base, 0, 3},
		{"other cache salt", "m\x00salt", base, 0, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := blockHashes(tc.seed, []byte(tc.text), bs)
			if len(got) != tc.wantBlocks {
				t.Fatalf("blocks = %d, want %d", len(got), tc.wantBlocks)
			}
			shared := 0
			for shared < len(got) && got[shared] == ref[shared] {
				shared++
			}
			if shared != tc.wantShared {
				t.Errorf("shared leading hashes = %d, want %d", shared, tc.wantShared)
			}
		})
	}
}

func TestKVPoolLRU(t *testing.T) {
	p := newKVPool(4)
	a := []uint64{1, 2}
	b := []uint64{3, 4}
	if hits := p.acquire(a); hits != 0 {
		t.Fatalf("cold acquire hits = %d", hits)
	}
	p.allocPrivate(1)
	if p.used != 3 {
		t.Fatalf("used = %d, want 3", p.used)
	}
	p.release(a, 1)
	if p.used != 0 || p.cached() != 2 {
		t.Fatalf("after release used=%d cached=%d, want 0 and 2", p.used, p.cached())
	}
	if m := p.lookup(a); m.leading != 2 || m.evictable != 2 {
		t.Fatalf("lookup after release = %+v, want 2 leading, 2 evictable", m)
	}

	// b needs 2 blocks and a third private one: the pool holds 4, 2 of them cached,
	// so one cached block of a must go, and it must be a's tail (released first).
	p.acquire(b)
	p.allocPrivate(1)
	if p.used != 3 || p.cached() != 1 {
		t.Fatalf("used=%d cached=%d, want 3 and 1", p.used, p.cached())
	}
	if m := p.lookup(a); m.leading != 1 {
		t.Errorf("a's head should survive eviction of its tail: %+v", m)
	}
	p.release(b, 1)
	if hits := p.acquire(a); hits != 1 {
		t.Errorf("re-acquire of a hits = %d, want 1", hits)
	}
	p.release(a, 0)
	if p.used != 0 {
		t.Errorf("idle pool used = %d, want 0", p.used)
	}
	if p.used+p.cached() > p.capacity {
		t.Errorf("pool over capacity: used %d + cached %d > %d", p.used, p.cached(), p.capacity)
	}
}

func TestEstimateTokens(t *testing.T) {
	for _, tc := range []struct{ bytes, want int }{{0, 1}, {1, 1}, {4, 1}, {5, 2}, {400, 100}} {
		if got := estimateTokens(tc.bytes); got != tc.want {
			t.Errorf("estimateTokens(%d) = %d, want %d", tc.bytes, got, tc.want)
		}
	}
}
