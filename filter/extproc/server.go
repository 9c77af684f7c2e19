package extproc

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync/atomic"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/inflow-gateway/inflow/filter/apierror"
	"github.com/inflow-gateway/inflow/filter/router"
)

// Server is the ext_proc service. It serves no request until Use gives it
// a router.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	current atomic.Pointer[snapshot]
	stats   *Stats
	log     *slog.Logger
}

var _ extprocv3.ExternalProcessorServer = (*Server)(nil)

// NewServer returns a server counting into stats and logging to log.
func NewServer(stats *Stats, log *slog.Logger) *Server {
	return &Server{stats: stats, log: log}
}

// snapshot is one router and the streams using it: a router is closed
// (its pools released) once it is no longer current and its last stream
// has ended, as Envoy keeps a filter config alive for its streams.
type snapshot struct {
	router *router.Router
	refs   atomic.Int64 // streams, plus one while current
}

func (s *snapshot) release() {
	if s.refs.Add(-1) == 0 {
		s.router.Close()
	}
}

// Use makes r the router of new streams; streams already running finish
// with the one they started with.
func (s *Server) Use(r *router.Router) {
	next := &snapshot{router: r}
	next.refs.Store(1)
	if old := s.current.Swap(next); old != nil {
		old.release()
	}
}

// Router is the current router, nil before Use.
func (s *Server) Router() *router.Router {
	if snap := s.current.Load(); snap != nil {
		return snap.router
	}
	return nil
}

// Close releases the current router.
func (s *Server) Close() {
	if old := s.current.Swap(nil); old != nil {
		old.release()
	}
}

// acquire takes a reference on the current snapshot, nil before Use.
func (s *Server) acquire() *snapshot {
	for {
		snap := s.current.Load()
		if snap == nil {
			return nil
		}
		n := snap.refs.Load()
		if n > 0 && snap.refs.CompareAndSwap(n, n+1) {
			return snap
		}
		// Retired between Load and CompareAndSwap: take the new one.
	}
}

// errNotReady is returned to a stream that arrives before any config.
var errNotReady = status.Error(codes.Unavailable, "inflow-epp has no filter config yet")

// Process serves one HTTP request's ext_proc stream.
func (s *Server) Process(srv extprocv3.ExternalProcessor_ProcessServer) (err error) {
	snap := s.acquire()
	if snap == nil {
		return errNotReady
	}
	st := &stream{router: snap.router, stats: s.stats, log: s.log, send: srv.Send}
	defer func() {
		st.end()
		snap.release()
	}()
	defer func() {
		// A bug in one request fails that request, never the process.
		if p := recover(); p != nil {
			s.log.Error("panic while processing a request", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = st.reject(apierror.ErrInternal)
			if err == nil {
				err = status.Error(codes.Internal, "inflow-epp: internal error")
			}
		}
	}()
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
			return nil
		}
		if err != nil {
			return err
		}
		done, err := st.handle(req)
		if err != nil || done {
			return err
		}
	}
}

// Stats are the server's counters, for its /metrics.
func (s *Server) Stats() *Stats { return s.stats }
