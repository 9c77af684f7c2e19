package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
)

// chatPrompt returns the raw messages array of a ~size-byte chat request:
// a system prompt shared by all conversations, then a user turn unique to
// conversation id.
func chatPrompt(id, size int) []byte {
	system := strings.Repeat("You are a careful assistant. Answer briefly and cite sources. ", 16)
	var b strings.Builder
	fmt.Fprintf(&b, `[{"role":"system","content":%q},{"role":"user","content":"conversation %d: `, system, id)
	for b.Len() < size-3 {
		fmt.Fprintf(&b, "question %d about item %d; ", id, b.Len())
	}
	b.WriteString(`"}]`)
	return []byte(b.String())
}

// benchPool returns a scheduler over n endpoints with fresh, varied
// metrics. Scraping is off; metrics never go stale during the run.
func benchPool(tb testing.TB, n int) (*Scheduler, func()) {
	tb.Helper()
	m := pool.NewManager()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.0.%d.%d:8000", i/250, i%250+1)
	}
	r := (&config.Scheduler{Staleness: "1h"}).Resolve()
	opts := ScrapeOptions(r)
	opts.Disabled = true
	lease := m.Retain("bench", addrs, opts, r.LRUCapacity)
	now := time.Now()
	for i, ep := range lease.Pool().Endpoints {
		ep.SetMetrics(&pool.Metrics{
			Waiting: float64(i % 4), Running: 8, KVCacheUsage: float64(i%10) / 20,
			HasLoRA: true, RunningLoRA: []string{"sql-lora"}, MaxLoRA: 4, BlockSize: 16, ScrapedAt: now,
		})
	}
	return New(lease, r), func() { lease.Release(); m.Close() }
}

// BenchmarkPick measures one pick of a 4 KiB chat prompt, hashing
// included, cycling through 256 conversations that share a system prompt
// so the prefix index holds real entries. It also pays Acquire/Release as
// the filter does.
func BenchmarkPick(b *testing.B) {
	const conversations = 256
	prompts := make([][][]byte, conversations)
	for i := range prompts {
		prompts[i] = [][]byte{chatPrompt(i, 4096)}
	}
	for _, n := range []int{8, 64, 512} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			s, done := benchPool(b, n)
			defer done()
			in := &Input{Model: "llama", SessionKey: ""}
			out := &Result{Endpoints: make([]*pool.Endpoint, 0, 8)}
			for i := range conversations { // warm the index and buffers
				in.Prompt = prompts[i]
				if err := s.Pick(in, out); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(prompts[0][0])))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				in.Prompt = prompts[i%conversations]
				if err := s.Pick(in, out); err != nil {
					b.Fatal(err)
				}
				out.Endpoints[0].Acquire()
				out.Endpoints[0].Release()
			}
		})
	}
}

// BenchmarkPickNewPrompts is the worst case for the prefix index: every
// prompt is new (no shared system prompt either), so each pick inserts 64
// blocks, and the maps grow, into the primary's LRU and the shared map.
func BenchmarkPickNewPrompts(b *testing.B) {
	const distinct = 8192
	prompts := make([][][]byte, distinct)
	for i := range prompts {
		p := chatPrompt(i, 4096)
		copy(p[30:], fmt.Sprintf("%08d", i)) // break the shared system prompt
		prompts[i] = [][]byte{p}
	}
	s, done := benchPool(b, 64)
	defer done()
	in := &Input{Model: "llama"}
	out := &Result{Endpoints: make([]*pool.Endpoint, 0, 8)}
	b.SetBytes(4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		in.Prompt = prompts[i%distinct]
		if err := s.Pick(in, out); err != nil {
			b.Fatal(err)
		}
	}
}
