package genai

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where the metrics are served.
const Path = "/metrics"

// retryBind is how often a listener whose address is taken tries again:
// during an Envoy hot restart the old process holds the port until it
// exits.
const retryBind = 2 * time.Second

// Servers are the metrics listeners of the process, one per address, kept
// while at least one config names the address: Envoy parses a new config
// before it destroys the old one, so an update that keeps the address
// keeps the listener (and a second bind of the same port never happens).
type Servers struct {
	metrics *Metrics
	log     func(msg string, args ...any)

	mu    sync.Mutex
	byAdr map[string]*server
}

type server struct {
	refs   int
	cancel context.CancelFunc
	done   chan struct{}
	bound  chan string // receives the bound address once
	addr   string
}

// NewServers serves m; log reports bind failures (nil: slog).
func NewServers(m *Metrics, log func(msg string, args ...any)) *Servers {
	if log == nil {
		log = slog.Warn
	}
	return &Servers{metrics: m, log: log, byAdr: map[string]*server{}}
}

// Retain starts serving on addr (ip:port) unless it already is, and
// returns the function that gives the hold back.
func (s *Servers) Retain(addr string) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv := s.byAdr[addr]
	if srv == nil {
		ctx, cancel := context.WithCancel(context.Background())
		srv = &server{cancel: cancel, done: make(chan struct{}), bound: make(chan string, 1)}
		s.byAdr[addr] = srv
		go s.serve(ctx, addr, srv)
	}
	srv.refs++
	var once sync.Once
	return func() { once.Do(func() { s.release(addr, srv) }) }
}

func (s *Servers) release(addr string, srv *server) {
	s.mu.Lock()
	srv.refs--
	last := srv.refs == 0
	if last {
		delete(s.byAdr, addr)
	}
	s.mu.Unlock()
	if last {
		srv.cancel()
		<-srv.done
	}
}

// Bound waits until the listener for addr is bound and returns its address
// (the real port when addr asked for port 0), or "" after timeout.
func (s *Servers) Bound(addr string, timeout time.Duration) string {
	s.mu.Lock()
	srv := s.byAdr[addr]
	s.mu.Unlock()
	if srv == nil {
		return ""
	}
	select {
	case a := <-srv.bound:
		srv.bound <- a
		return a
	case <-time.After(timeout):
		return ""
	}
}

func (s *Servers) serve(ctx context.Context, addr string, srv *server) {
	defer close(srv.done)
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	for {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
		if err == nil {
			srv.bound <- ln.Addr().String()
			hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
			go func() {
				<-ctx.Done()
				_ = hs.Close()
			}()
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log("inflow: GenAI metrics listener stopped", "address", addr, "error", err)
			}
			return
		}
		s.log("inflow: cannot listen for GenAI metrics; retrying", "address", addr, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryBind):
		}
	}
}
