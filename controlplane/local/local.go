// Package local runs the control plane in process on a loopback port: load,
// translate, publish over ADS and watch the file, as inflow-controlplane
// does, without its admin port. The e2e tests and the Docker-free demo use
// it so they exercise the same packages the binary runs.
package local

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/reload"
	"github.com/inflow-gateway/inflow/controlplane/xds"
)

// Server is a running in-process control plane.
type Server struct {
	// Addr is the ADS listener's ip:port.
	Addr string

	cancel context.CancelFunc
	done   []chan error
}

// Start applies the config at path (which must load) and serves ADS on a
// free loopback port until Close or ctx ends.
func Start(ctx context.Context, path string, log *slog.Logger) (*Server, error) {
	ctx, cancel := context.WithCancel(ctx)
	m := &admin.Metrics{}
	srv := xds.New(ctx, log, m)
	r := &reload.Reloader{Path: path, Publisher: srv, Metrics: m, Log: log}
	if err := r.Reload(ctx); err != nil {
		cancel()
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, err
	}
	s := &Server{Addr: lis.Addr().String(), cancel: cancel}
	served, watched := make(chan error, 1), make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	go func() { watched <- r.Watch(ctx) }()
	s.done = []chan error{served, watched}
	return s, nil
}

// Close stops serving and watching and returns what either failed with.
func (s *Server) Close() error {
	s.cancel()
	var errs []error
	for _, c := range s.done {
		errs = append(errs, <-c)
	}
	return errors.Join(errs...)
}
