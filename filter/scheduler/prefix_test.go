package scheduler

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// eppHashes is the EPP's hashPrompt written plainly: concatenate, cut,
// chain. HashPrompt must agree with it.
func eppHashes(model, salt, prompt string, block, maxBlocks int) []uint64 {
	if len(prompt) > block*maxBlocks {
		prompt = prompt[:block*maxBlocks]
	}
	prev := xxhash.Sum64String(model + salt)
	var out []uint64
	for i := 0; i+block <= len(prompt); i += block {
		b := append([]byte(prompt[i:i+block]), binary.LittleEndian.AppendUint64(nil, prev)...)
		prev = xxhash.Sum64(b)
		out = append(out, prev)
	}
	return out
}

func TestHashPrompt(t *testing.T) {
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 40) // 1800 bytes
	tests := []struct {
		name      string
		salt      string
		parts     []string
		block     int
		maxBlocks int
	}{
		{"one part", "", []string{prompt}, 64, 256},
		{"split mid-block", "", []string{prompt[:10], prompt[10:100], "", prompt[100:]}, 64, 256},
		{"byte by byte", "", strings.Split(prompt, ""), 64, 256},
		{"salted", "tenant-a", []string{prompt}, 64, 256},
		{"capped", "", []string{prompt}, 64, 5},
		{"vllm block 32 tokens", "", []string{prompt[:500], prompt[500:]}, 128, 256},
		{"shorter than a block", "", []string{prompt[:63]}, 64, 256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &Input{Model: "llama", CacheSalt: tt.salt}
			for _, p := range tt.parts {
				in.Prompt = append(in.Prompt, []byte(p))
			}
			var buf []byte
			got := HashPrompt(nil, &buf, in, tt.block, tt.maxBlocks)
			want := eppHashes("llama", tt.salt, strings.Join(tt.parts, ""), tt.block, tt.maxBlocks)
			if len(got) != len(want) {
				t.Fatalf("%d hashes, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("hash %d differs", i)
				}
			}
		})
	}
	a := HashPrompt(nil, new([]byte), &Input{Model: "a", Prompt: [][]byte{[]byte(prompt)}}, 64, 256)
	b := HashPrompt(nil, new([]byte), &Input{Model: "b", Prompt: [][]byte{[]byte(prompt)}}, 64, 256)
	if a[0] == b[0] {
		t.Error("different models must not share block hashes")
	}
}

func TestHashPromptDoesNotAllocate(t *testing.T) {
	in := &Input{Model: "llama", CacheSalt: "s", Prompt: [][]byte{[]byte(strings.Repeat("x", 4096))}}
	dst := make([]uint64, 0, 256)
	buf := make([]byte, 72)
	if n := testing.AllocsPerRun(100, func() { dst = HashPrompt(dst[:0], &buf, in, 64, 256) }); n != 0 {
		t.Errorf("%v allocations per hash", n)
	}
}
