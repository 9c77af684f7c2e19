package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/internal/poll"
)

func newTestEngine(mod func(*Options)) *engine {
	o := fastOptions()
	if mod != nil {
		mod(&o)
	}
	return newEngine(o.withDefaults())
}

func textReq(text string, maxTokens int) seqRequest {
	return seqRequest{seed: "m\x00", text: []byte(text), prompt: estimateTokens(len(text)), maxTokens: maxTokens}
}

// run drives s to the end of its output and finishes it.
func run(t *testing.T, s *seq) {
	t.Helper()
	for {
		ok, err := s.next(testCtx(t))
		if err != nil {
			t.Errorf("next: %v", err)
			break
		}
		if !ok {
			break
		}
	}
	s.finish(finishLength)
}

func mustAdmit(t *testing.T, e *engine, r seqRequest) *seq {
	t.Helper()
	s, err := e.admit(testCtx(t), r)
	if err != nil {
		t.Fatalf("admit: %v", err)
	}
	return s
}

func TestQueueIsFIFO(t *testing.T) {
	e := newTestEngine(func(o *Options) { o.MaxNumSeqs = 1 })
	first := mustAdmit(t, e, textReq("first", 1))

	order := make(chan string, 3)
	names := []string{"b", "c", "d"}
	for i, name := range names {
		go func() {
			s, err := e.admit(testCtx(t), textReq(name, 1))
			if err != nil {
				order <- "error: " + err.Error()
				return
			}
			order <- name
			s.finish(finishLength)
		}()
		// Queue them one at a time so their arrival order is known.
		poll.Eventually(t, fmt.Sprintf("%d waiting", i+1), func() bool { return e.snapshot().waiting == i+1 })
	}
	if st := e.snapshot(); st.running != 1 {
		t.Fatalf("running = %d with max-num-seqs 1", st.running)
	}
	first.finish(finishLength)
	var got []string
	for range names {
		got = append(got, receive(t, "an admission", order))
	}
	if !slices.Equal(got, names) {
		t.Errorf("admission order = %v, want %v", got, names)
	}
}

func TestCancelledWaiterLeavesQueue(t *testing.T) {
	e := newTestEngine(func(o *Options) { o.MaxNumSeqs = 1 })
	holder := mustAdmit(t, e, textReq("holder", 1))
	ctx, cancel := context.WithCancel(testCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := e.admit(ctx, textReq("quitter", 1))
		errc <- err
	}()
	poll.Eventually(t, "quitter waiting", func() bool { return e.snapshot().waiting == 1 })
	cancel()
	if err := receive(t, "admit to give up", errc); err == nil {
		t.Fatal("admit succeeded after its context was cancelled")
	}
	if st := e.snapshot(); st.waiting != 0 {
		t.Errorf("waiting = %d after the waiter gave up", st.waiting)
	}
	holder.finish(finishLength)
	if st := e.snapshot(); st.running != 0 || st.kvUsed != 0 {
		t.Errorf("idle engine: running=%d kvUsed=%d", st.running, st.kvUsed)
	}
}

func TestLoadFactor(t *testing.T) {
	tests := []struct {
		maxSeqs, running int
		factor           float64
		want             float64
	}{
		{5, 1, 3, 1},
		{5, 3, 3, 2},
		{5, 5, 3, 3},
		{1, 1, 3, 1},
		{256, 256, 2, 2},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("n=%d_r=%d_f=%v", tc.maxSeqs, tc.running, tc.factor), func(t *testing.T) {
			e := newTestEngine(func(o *Options) { o.MaxNumSeqs, o.LoadFactor = tc.maxSeqs, tc.factor })
			if got := e.loadFactorLocked(tc.running); got != tc.want {
				t.Errorf("factor = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPrefillFormula(t *testing.T) {
	e := newTestEngine(func(o *Options) { o.TTFTBase, o.PrefillPerToken = 10*time.Millisecond, time.Millisecond })
	tests := []struct {
		name           string
		prompt, cached int
		want           time.Duration
	}{
		{"cold", 100, 0, 110 * time.Millisecond},
		{"half cached", 100, 48, 62 * time.Millisecond},
		{"fully cached", 100, 100, 10 * time.Millisecond},
		{"cached beyond prompt is clamped", 10, 16, 10 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := e.prefillTime(tc.prompt, tc.cached); got != tc.want {
				t.Errorf("prefill = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCachedPrefixShortensPrefill(t *testing.T) {
	const bs = 16
	long := strings.Repeat("0123456789abcdef", 40) // 640 bytes = 160 tokens = 10 blocks
	tests := []struct {
		name       string
		warm, then seqRequest
		wantCached int
	}{
		{"same prompt", textReq(long, 1), textReq(long, 1), 160},
		{"shared first half", textReq(long, 1), textReq(long[:320]+strings.Repeat("x", 320), 1), 80},
		{"partial block is never cached", textReq(long+"tail", 1), textReq(long+"tail", 1), 160},
		{"other cache salt", textReq(long, 1), seqRequest{seed: "m\x00salt", text: []byte(long), prompt: 160, maxTokens: 1}, 0},
		{"other adapter", textReq(long, 1), seqRequest{lora: "a", seed: "a\x00", text: []byte(long), prompt: 160, maxTokens: 1}, 0},
		{"prompt shorter than a block", textReq("short", 1), textReq("short", 1), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(func(o *Options) { o.BlockSize, o.LoRAs = bs, []string{"a"} })
			warm := mustAdmit(t, e, tc.warm)
			run(t, warm)
			then := mustAdmit(t, e, tc.then)
			defer run(t, then)
			if then.cachedTokens != tc.wantCached {
				t.Fatalf("cached tokens = %d, want %d", then.cachedTokens, tc.wantCached)
			}
			if warm.cachedTokens != 0 {
				t.Errorf("cold request found %d cached tokens", warm.cachedTokens)
			}
			switch {
			case tc.wantCached > 0 && then.prefill >= warm.prefill:
				t.Errorf("cached prefill %v not shorter than cold %v", then.prefill, warm.prefill)
			case tc.wantCached == 0 && then.req.prompt == warm.req.prompt && then.prefill != warm.prefill:
				t.Errorf("uncached prefill %v differs from cold %v", then.prefill, warm.prefill)
			}
		})
	}
}

func TestLoRASlotLimit(t *testing.T) {
	e := newTestEngine(func(o *Options) { o.LoRAs, o.MaxLoRAs = []string{"a", "b"}, 1 })
	loraReq := func(name string) seqRequest {
		r := textReq("prompt for "+name, 1)
		r.lora, r.seed = name, name+"\x00"
		return r
	}
	a1 := mustAdmit(t, e, loraReq("a"))

	bAdmitted := make(chan *seq, 1)
	go func() {
		s, err := e.admit(testCtx(t), loraReq("b"))
		if err != nil {
			t.Errorf("admit b: %v", err)
		}
		bAdmitted <- s
	}()
	poll.Eventually(t, "b waiting for a LoRA slot", func() bool { return e.snapshot().waiting == 1 })

	// A request for the active adapter, and one for the base model, pass the waiting b.
	a2 := mustAdmit(t, e, loraReq("a"))
	base := mustAdmit(t, e, textReq("base model", 1))
	st := e.snapshot()
	if !slices.Equal(st.runningLoRAs, []string{"a"}) || !slices.Equal(st.waitingLoRAs, []string{"b"}) {
		t.Fatalf("running LoRAs %v waiting %v, want [a] and [b]", st.runningLoRAs, st.waitingLoRAs)
	}
	run(t, base)
	run(t, a1)
	if st := e.snapshot(); st.waiting != 1 {
		t.Fatalf("b admitted while adapter a still runs (waiting=%d)", st.waiting)
	}
	run(t, a2) // a is now inactive: its slot goes to b
	b := receive(t, "b admitted", bAdmitted)
	if b == nil {
		t.FailNow()
	}
	if st := e.snapshot(); !slices.Equal(st.runningLoRAs, []string{"b"}) || len(st.waitingLoRAs) != 0 {
		t.Errorf("after a finished: running %v waiting %v, want [b] and []", st.runningLoRAs, st.waitingLoRAs)
	}
	run(t, b)
}

func TestHeadBlockedByKVCapacity(t *testing.T) {
	// 4 blocks of 4 tokens; each request needs 8 prompt + 4 output tokens = 3 blocks.
	e := newTestEngine(func(o *Options) { o.KVBlocks, o.BlockSize = 4, 4 })
	first := mustAdmit(t, e, textReq(strings.Repeat("a", 32), 4))
	admitted := make(chan *seq, 1)
	go func() {
		s, err := e.admit(testCtx(t), textReq(strings.Repeat("b", 32), 4))
		if err != nil {
			t.Errorf("admit: %v", err)
		}
		admitted <- s
	}()
	poll.Eventually(t, "second request waiting for KV space", func() bool { return e.snapshot().waiting == 1 })
	if st := e.snapshot(); st.running != 1 {
		t.Fatalf("running = %d, want 1: the second request does not fit", st.running)
	}
	run(t, first)
	second := receive(t, "second admitted", admitted)
	if second == nil {
		t.FailNow()
	}
	run(t, second)
	if _, err := e.admit(testCtx(t), textReq(strings.Repeat("c", 64), 4)); err != errTooLong {
		t.Errorf("request larger than the whole cache: err = %v, want errTooLong", err)
	}
}

// TestKVReturnsToZeroWhenIdle runs a burst of requests that share prefixes, overflow
// the cache and partly give up, then checks every block and slot came back.
func TestKVReturnsToZeroWhenIdle(t *testing.T) {
	e := newTestEngine(func(o *Options) { o.KVBlocks, o.BlockSize, o.MaxNumSeqs = 48, 4, 6 })
	prefixes := []string{strings.Repeat("p", 40), strings.Repeat("q", 24), ""}
	rng := rand.New(rand.NewPCG(1, 2))
	burstCtx := testCtx(t) // a leak then fails the test instead of hanging it
	var wg sync.WaitGroup
	var mu sync.Mutex
	maxUsed := 0
	for i := range 60 {
		text := prefixes[i%len(prefixes)] + strings.Repeat(string(rune('a'+i%26)), rng.IntN(60))
		maxTokens := 1 + rng.IntN(12)
		giveUp := i%7 == 0
		wg.Go(func() {
			ctx := burstCtx
			if giveUp {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 50*time.Microsecond)
				defer cancel()
			}
			s, err := e.admit(ctx, textReq(text, maxTokens))
			if err != nil {
				return // gave up while waiting
			}
			reason := finishLength
			for {
				ok, err := s.next(ctx)
				if err != nil {
					reason = finishAbort
					break
				}
				if !ok {
					break
				}
				st := e.snapshot()
				mu.Lock()
				maxUsed = max(maxUsed, st.kvUsed)
				mu.Unlock()
				if st.kvUsed+st.kvCached > 48 {
					t.Errorf("pool over capacity: used %d + cached %d", st.kvUsed, st.kvCached)
				}
			}
			s.finish(reason)
		})
	}
	wg.Wait()
	st := e.snapshot()
	if st.running != 0 || st.waiting != 0 || st.kvUsed != 0 {
		t.Errorf("idle engine: running=%d waiting=%d kvUsed=%d, want all 0", st.running, st.waiting, st.kvUsed)
	}
	e.mu.Lock()
	reserved := e.reserved
	e.mu.Unlock()
	if reserved != 0 {
		t.Errorf("reserved blocks = %d when idle, want 0", reserved)
	}
	if st.kvCached == 0 {
		t.Error("no prefix stayed cached after the burst")
	}
	if maxUsed == 0 {
		t.Error("KV usage never rose above zero")
	}
	if st.prefixHits == 0 || st.prefixHits > st.prefixQueries {
		t.Errorf("prefix hits %d of %d queried tokens: want some, at most all", st.prefixHits, st.prefixQueries)
	}
}

func TestOutputGrowsKVUsage(t *testing.T) {
	e := newTestEngine(func(o *Options) { o.KVBlocks, o.BlockSize = 100, 4 })
	s := mustAdmit(t, e, textReq(strings.Repeat("x", 16), 9)) // 4 prompt tokens = 1 block
	if used := e.snapshot().kvUsed; used != 1 {
		t.Fatalf("after prefill used = %d, want 1", used)
	}
	for {
		ok, err := s.next(testCtx(t))
		if err != nil || !ok {
			break
		}
	}
	// 4 prompt + 9 output tokens = 13 tokens = 4 blocks.
	if used := e.snapshot().kvUsed; used != 4 {
		t.Errorf("after 9 output tokens used = %d, want 4", used)
	}
	s.finish(finishLength)
	if used := e.snapshot().kvUsed; used != 0 {
		t.Errorf("after finish used = %d, want 0", used)
	}
}

// TestDecodeSlowsWithBatch checks the per-token pacing: ITL alone, ITL*factor(r) with r
// sequences running (factor(2) = 3 with MaxNumSeqs 2 and LoadFactor 3).
func TestDecodeSlowsWithBatch(t *testing.T) {
	const itl = 50 * time.Microsecond
	e := newTestEngine(func(o *Options) { o.ITL, o.MaxNumSeqs, o.LoadFactor = itl, 2, 3 })
	step := func(s *seq) time.Duration {
		t.Helper()
		before := s.nextAt
		if ok, err := s.next(testCtx(t)); !ok || err != nil {
			t.Fatalf("next = %v, %v", ok, err)
		}
		return s.nextAt.Sub(before)
	}
	a := mustAdmit(t, e, textReq("alone", 10))
	step(a) // first token: the gap after it is paced by the batch at that moment
	if got := step(a); got != itl {
		t.Errorf("alone: token gap %v, want %v", got, itl)
	}
	b := mustAdmit(t, e, textReq("company", 10))
	if got := step(a); got != 3*itl {
		t.Errorf("two running: token gap %v, want %v", got, 3*itl)
	}
	b.finish(finishAbort)
	if got := step(a); got != itl {
		t.Errorf("alone again: token gap %v, want %v", got, itl)
	}
	a.finish(finishAbort)
}
