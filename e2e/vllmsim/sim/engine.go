package sim

import (
	"container/list"
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Finish reasons, as vLLM reports them in responses and in vllm:request_success_total.
const (
	finishStop   = "stop"
	finishLength = "length"
	finishAbort  = "abort"
)

var (
	errEngineClosed = errors.New("vllmsim is shutting down")
	errTooLong      = errors.New("request does not fit in the KV cache")
)

// seqRequest is what the engine needs to know about one request.
type seqRequest struct {
	lora       string        // adapter name, "" for the base model
	seed       string        // block-hash seed: served model name and cache_salt
	text       []byte        // serialized prompt, hashed into blocks; never logged
	prompt     int           // prompt tokens
	maxTokens  int           // tokens to generate; 0 for embeddings (prefill only)
	extraDelay time.Duration // added to the time to first token by the "slow" fault
}

// engine is the simulated vLLM scheduler: FIFO admission limited by max-num-seqs, by
// max-loras distinct adapters and by KV blocks, then a timed prefill and a paced decode.
type engine struct {
	cfg  Options
	done chan struct{} // closed by close(); wakes waiters and sleeping sequences

	mu       sync.Mutex
	closed   bool
	waiting  *list.List // *seq in arrival order
	running  int
	reserved int            // decode blocks promised to running sequences, not yet taken
	lora     map[string]int // adapter -> running sequences using it (the active set)
	kv       *kvPool
	stats    engineCounters
}

// engineCounters are the cumulative numbers /metrics exports.
type engineCounters struct {
	prefixQueries, prefixHits uint64 // prompt tokens looked up / found cached
	success                   map[string]uint64
	ttft, e2e                 *histogram
}

func newEngine(cfg Options) *engine {
	return &engine{
		cfg:     cfg,
		done:    make(chan struct{}),
		waiting: list.New(),
		lora:    make(map[string]int),
		kv:      newKVPool(cfg.KVBlocks),
		stats: engineCounters{
			success: map[string]uint64{finishStop: 0, finishLength: 0, finishAbort: 0},
			ttft:    newHistogram(ttftBuckets),
			e2e:     newHistogram(latencyBuckets),
		},
	}
}

// seq is one request inside the engine, from arrival to finish.
type seq struct {
	e       *engine
	req     seqRequest
	hashes  []uint64
	arrival time.Time
	elem    *list.Element // in e.waiting until admitted
	ready   chan struct{} // closed on admission

	// Set at admission, under e.mu.
	admitted     time.Time
	cachedTokens int
	prefill      time.Duration
	private      int // private blocks held
	reservedLeft int // decode blocks still promised to this sequence
	finished     bool

	// Owned by the goroutine driving next(); no lock needed.
	nextAt    time.Time
	generated int
	prefilled bool
}

// loadFactorLocked is the slowdown with r running sequences:
//
//	factor(r) = 1 + (LoadFactor - 1) * (r - 1) / (MaxNumSeqs - 1)
//
// 1 for a lone sequence, LoadFactor with a full batch, linear in between: decode steps
// get slower as the batch grows because each step reads more KV cache and computes
// more tokens (the linear model llm-d-inference-sim uses for time-factor-under-load).
func (e *engine) loadFactorLocked(r int) float64 {
	if e.cfg.MaxNumSeqs <= 1 || r <= 1 {
		return 1
	}
	return 1 + (e.cfg.LoadFactor-1)*float64(r-1)/float64(e.cfg.MaxNumSeqs-1)
}

// prefillTime is the time from admission to the first token:
//
//	prefill = TTFTBase + PrefillPerToken * (prompt - cached)
//
// so TTFT = queue wait + prefill: only tokens missing from the prefix cache are computed.
// Batch size is left out on purpose (it slows decode, below): TTFT then depends only on
// the queue and the cache, the two things a router's queue and prefix scorers act on.
func (e *engine) prefillTime(prompt, cached int) time.Duration {
	return e.cfg.TTFTBase + time.Duration(max(0, prompt-cached))*e.cfg.PrefillPerToken
}

// admit queues r and blocks until it is running, ctx ends or the engine closes.
func (e *engine) admit(ctx context.Context, r seqRequest) (*seq, error) {
	if blocksFor(r.prompt+r.maxTokens, e.cfg.BlockSize) > e.cfg.KVBlocks {
		return nil, errTooLong
	}
	s := &seq{
		e: e, req: r, arrival: time.Now(), ready: make(chan struct{}),
		hashes: blockHashes(r.seed, r.text, e.cfg.BlockSize),
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, errEngineClosed
	}
	s.elem = e.waiting.PushBack(s)
	e.scheduleLocked()
	e.mu.Unlock()

	var err error
	select {
	case <-s.ready:
		return s, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-e.done:
		err = errEngineClosed
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.elem == nil { // admitted while we were giving up: hand the slot back
		s.finishLocked(finishAbort)
		return nil, err
	}
	e.waiting.Remove(s.elem)
	s.elem = nil
	e.scheduleLocked() // a blocked head of line may have been holding others back
	return nil, err
}

// scheduleLocked admits waiting sequences in arrival order, as vLLM's scheduler does:
// stop when the batch is full or the head does not fit in the KV cache; skip (keep
// waiting) a sequence whose adapter would exceed max-loras, letting later ones pass.
func (e *engine) scheduleLocked() {
	for el := e.waiting.Front(); el != nil; {
		next := el.Next()
		s := el.Value.(*seq)
		if e.running >= e.cfg.MaxNumSeqs {
			return
		}
		if s.req.lora != "" && e.lora[s.req.lora] == 0 && len(e.lora) >= e.cfg.MaxLoRAs {
			el = next
			continue
		}
		if !e.fitsLocked(s) {
			return
		}
		e.waiting.Remove(el)
		s.elem = nil
		e.startLocked(s)
		el = next
	}
}

// fitsLocked reports whether s can hold every block it will ever need (prompt plus
// max_tokens of output) without evicting blocks other running sequences use. Reserving
// up front keeps the model free of preemption while still letting KV usage grow token
// by token.
func (e *engine) fitsLocked(s *seq) bool {
	m := e.kv.lookup(s.hashes)
	total := blocksFor(s.req.prompt+s.req.maxTokens, e.cfg.BlockSize)
	need := total - m.present + m.evictable
	return e.kv.used+e.reserved+need <= e.kv.capacity
}

// startLocked moves s into the running batch and fixes its time to first token.
func (e *engine) startLocked(s *seq) {
	now := time.Now()
	leading := e.kv.acquire(s.hashes)
	promptBlocks := blocksFor(s.req.prompt, e.cfg.BlockSize)
	s.private = promptBlocks - len(s.hashes)
	e.kv.allocPrivate(s.private)
	s.reservedLeft = blocksFor(s.req.prompt+s.req.maxTokens, e.cfg.BlockSize) - promptBlocks
	e.reserved += s.reservedLeft

	e.running++
	if s.req.lora != "" {
		e.lora[s.req.lora]++
	}
	s.cachedTokens = min(leading*e.cfg.BlockSize, s.req.prompt)
	e.stats.prefixQueries += uint64(s.req.prompt)
	e.stats.prefixHits += uint64(s.cachedTokens)

	s.admitted = now
	s.prefill = e.prefillTime(s.req.prompt, s.cachedTokens) + s.req.extraDelay
	s.nextAt = now.Add(s.prefill)
	close(s.ready)
}

// next waits until the next output token is due and reports whether one was produced.
// The first call returns after the prefill; with maxTokens 0 (embeddings) it then
// returns false. Tokens follow every ITL * factor(running), re-evaluated per token so a
// sequence speeds up as others finish.
func (s *seq) next(ctx context.Context) (bool, error) {
	if s.prefilled && s.generated >= s.req.maxTokens {
		return false, nil
	}
	if err := s.e.sleepUntil(ctx, s.nextAt); err != nil {
		return false, err
	}
	first := !s.prefilled
	s.prefilled = true
	if s.req.maxTokens == 0 {
		return false, nil
	}
	s.generated++
	now := time.Now()

	e := s.e
	e.mu.Lock()
	if first {
		e.stats.ttft.observe(now.Sub(s.arrival).Seconds())
	}
	// Output tokens fill the KV cache too: take a promised block at each block boundary.
	if held := blocksFor(s.req.prompt+s.generated, e.cfg.BlockSize); held > blocksFor(s.req.prompt+s.generated-1, e.cfg.BlockSize) && s.reservedLeft > 0 {
		s.reservedLeft--
		e.reserved--
		s.private++
		e.kv.allocPrivate(1)
	}
	itl := time.Duration(float64(e.cfg.ITL) * e.loadFactorLocked(e.running))
	e.mu.Unlock()

	// Advance from the schedule, not from now, so a slow reader does not slow the engine.
	s.nextAt = s.nextAt.Add(itl)
	return true, nil
}

// sleepUntil waits for t, ctx or engine shutdown.
func (e *engine) sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-e.done:
		return errEngineClosed
	}
}

// finish releases everything s holds and records how it ended. Safe to call twice.
func (s *seq) finish(reason string) {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	s.finishLocked(reason)
}

func (s *seq) finishLocked(reason string) {
	if s.finished {
		return
	}
	s.finished = true
	e := s.e
	e.kv.release(s.hashes, s.private)
	e.reserved -= s.reservedLeft
	s.reservedLeft = 0
	e.running--
	if s.req.lora != "" {
		if e.lora[s.req.lora]--; e.lora[s.req.lora] == 0 {
			delete(e.lora, s.req.lora)
		}
	}
	e.stats.success[reason]++
	e.stats.e2e.observe(time.Since(s.arrival).Seconds())
	e.scheduleLocked()
}

// close fails waiting and running sequences; their goroutines clean up.
func (e *engine) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.closed = true
		close(e.done)
	}
}

// engineState is a consistent snapshot for /metrics and tests.
type engineState struct {
	waiting, running int
	kvUsed, kvCached int
	runningLoRAs     []string
	waitingLoRAs     []string
	prefixQueries    uint64
	prefixHits       uint64
	success          map[string]uint64
	ttft, e2e        histogram
}

func (e *engine) snapshot() engineState {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := engineState{
		waiting: e.waiting.Len(), running: e.running,
		kvUsed: e.kv.used, kvCached: e.kv.cached(),
		prefixQueries: e.stats.prefixQueries, prefixHits: e.stats.prefixHits,
		success: make(map[string]uint64, len(e.stats.success)),
		ttft:    e.stats.ttft.clone(), e2e: e.stats.e2e.clone(),
	}
	for k, v := range e.stats.success {
		st.success[k] = v
	}
	for name := range e.lora {
		st.runningLoRAs = append(st.runningLoRAs, name)
	}
	for el := e.waiting.Front(); el != nil; el = el.Next() {
		if l := el.Value.(*seq).req.lora; l != "" && !slices.Contains(st.waitingLoRAs, l) {
			st.waitingLoRAs = append(st.waitingLoRAs, l)
		}
	}
	slices.Sort(st.runningLoRAs)
	slices.Sort(st.waitingLoRAs)
	return st
}
