package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server is one running simulated vLLM server.
type Server struct {
	opts    Options
	engine  *engine
	metrics *metricsRenderer
	http    *http.Server
	ln      net.Listener
	started time.Time
	closing chan struct{} // closed by Close: ends hung requests
	served  chan error    // result of http.Server.Serve

	mu    sync.Mutex
	fault Fault
	rng   *rand.Rand

	hanging atomic.Int32  // requests held by a "hang" fault, so tests can see them arrive
	scrapes atomic.Uint64 // GET /metrics answered with metrics, so benchmarks can count scrape load

	closeOnce sync.Once
	closeErr  error
}

// Start listens on opts.Listen and serves until Close is called or ctx ends.
func Start(ctx context.Context, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("vllmsim options: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("vllmsim listen: %w", err)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	s := &Server{
		opts:    opts,
		engine:  newEngine(opts),
		metrics: &metricsRenderer{opts: opts},
		ln:      ln,
		started: time.Now(),
		closing: make(chan struct{}),
		served:  make(chan error, 1),
		rng:     rand.New(rand.NewPCG(seed, seed^0x5bd1e995)),
	}
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { s.served <- s.http.Serve(ln) }()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close() // the caller cancelled: its error is its own
		case <-s.closing:
		}
	}()
	opts.Logger.Info("vllmsim serving", "addr", s.Addr(), "model", opts.Model, "loras", opts.LoRAs)
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the server's base URL, e.g. http://127.0.0.1:8000 (append /v1 for OpenAI clients).
func (s *Server) URL() string { return "http://" + s.Addr() }

// Options returns the effective options, defaults filled in.
func (s *Server) Options() Options { return s.opts }

// Close stops the server at once: open connections, streams and hung requests end.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.engine.close()
		err := s.http.Close()
		if serr := <-s.served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		s.closeErr = err
	})
	return s.closeErr
}

// SetFault replaces the injected fault; Fault{} heals the server.
func (s *Server) SetFault(f Fault) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
	return nil
}

// Fault returns the injected fault.
func (s *Server) Fault() Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fault
}

// SetMetricsOverride replaces the reported-metric overrides; MetricsOverride{} clears them.
func (s *Server) SetMetricsOverride(o MetricsOverride) { s.metrics.setOverride(o) }

// chance reports true with probability p.
func (s *Server) chance(p float64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Float64() < p
}

// Stats is the engine's state as /metrics would report it without overrides.
type Stats struct {
	Waiting, Running   int
	KVBlocksUsed       int // blocks held by running requests
	KVBlocksCached     int // blocks holding a cached prefix nobody uses (evictable)
	KVCacheUsage       float64
	RunningLoRAs       []string
	WaitingLoRAs       []string
	PrefixCacheQueries uint64            // prompt tokens looked up
	PrefixCacheHits    uint64            // prompt tokens found cached
	Finished           map[string]uint64 // by finish reason: stop, length, abort
	// Scrapes counts the /metrics pages served (faulted scrapes excluded).
	Scrapes uint64
}

// Stats returns a consistent snapshot of the engine.
func (s *Server) Stats() Stats {
	st := s.engine.snapshot()
	return Stats{
		Waiting: st.waiting, Running: st.running,
		KVBlocksUsed: st.kvUsed, KVBlocksCached: st.kvCached,
		KVCacheUsage: float64(st.kvUsed) / float64(s.opts.KVBlocks),
		RunningLoRAs: st.runningLoRAs, WaitingLoRAs: st.waitingLoRAs,
		PrefixCacheQueries: st.prefixQueries, PrefixCacheHits: st.prefixHits,
		Finished: st.success, Scrapes: s.scrapes.Load(),
	}
}
