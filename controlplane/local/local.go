// Package local runs the control plane in process on a loopback port: load,
// translate, publish over ADS and watch the file, as inflow-controlplane
// does, without its admin port. The e2e tests and the Docker-free demo use
// it so they exercise the same packages the binary runs; with Kubernetes
// options it runs the Kubernetes source too.
package local

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"

	"k8s.io/client-go/rest"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/configfile"
	"github.com/inflow-gateway/inflow/controlplane/kube"
	"github.com/inflow-gateway/inflow/controlplane/reload"
	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/xds"
)

// Server is a running in-process control plane.
type Server struct {
	// Addr is the ADS listener's ip:port.
	Addr string
	// XDS is the server publishing the snapshots.
	XDS *xds.Server
	// Kube is the Kubernetes source, nil in file mode.
	Kube *kube.Source
	// ExtensionAddr is the Envoy Gateway extension server's ip:port
	// (StartEnvoyGateway only).
	ExtensionAddr string

	cancel context.CancelFunc
	done   []chan error
	closed sync.Once
	err    error
}

// Kubernetes is what the Kubernetes source needs beyond the file.
type Kubernetes struct {
	Rest *rest.Config
	// Election, when set, makes this replica contend to write status.
	Election *kube.Election
	// OnPublished is kube.Options.OnPublished.
	OnPublished func(version uint64, res *kube.Result)
}

// Start applies the config at path (which must load) and serves ADS on a
// free loopback port until Close or ctx ends.
func Start(ctx context.Context, path string, log *slog.Logger) (*Server, error) {
	return StartKubernetes(ctx, path, log, nil)
}

// StartKubernetes is Start with the Kubernetes source, which a config with
// a kubernetes section needs.
func StartKubernetes(ctx context.Context, path string, log *slog.Logger, k *Kubernetes) (*Server, error) {
	return start(ctx, path, log, k, nil)
}

// start is StartKubernetes; observe, if set, gets every config applied
// (the file's, or each Kubernetes build).
func start(ctx context.Context, path string, log *slog.Logger, k *Kubernetes, observe func(*spec.Config) error) (*Server, error) {
	ctx, cancel := context.WithCancel(ctx)
	m := &admin.Metrics{}
	srv := xds.New(ctx, log, m)
	r := &reload.Reloader{Path: path, Publisher: srv, Metrics: m, Log: log, Observe: observe}
	s := &Server{XDS: srv, cancel: cancel}
	fail := func(err error) (*Server, error) {
		cancel()
		return nil, err
	}
	loaded, err := configfile.Load(path)
	if err != nil {
		return fail(err)
	}
	if loaded.Config.Kubernetes != nil {
		if k == nil {
			return fail(errors.New("local: the config has a kubernetes section: pass Kubernetes options"))
		}
		published := k.OnPublished
		if observe != nil {
			published = func(version uint64, res *kube.Result) {
				if err := observe(res.Config); err != nil {
					log.Error("local: a Kubernetes build was refused", "err", err)
				}
				if k.OnPublished != nil {
					k.OnPublished(version, res)
				}
			}
		}
		s.Kube, err = kube.New(kube.Options{Rest: k.Rest, Publisher: srv, Log: log, Election: k.Election, OnPublished: published}, loaded.Config)
		if err != nil {
			return fail(err)
		}
		r.Apply = s.Kube.SetBase
	}
	if err := r.Reload(ctx); err != nil {
		return fail(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	s.Addr = lis.Addr().String()
	s.done = append(s.done, goErr(func() error { return srv.Serve(ctx, lis) }), goErr(func() error { return r.Watch(ctx) }))
	if s.Kube != nil {
		s.done = append(s.done, goErr(func() error { return s.Kube.Run(ctx) }))
	}
	return s, nil
}

func goErr(f func() error) chan error {
	c := make(chan error, 1)
	go func() { c <- f() }()
	return c
}

// Close stops serving and watching and returns what either failed with;
// later calls return the same.
func (s *Server) Close() error {
	s.closed.Do(func() {
		s.cancel()
		var errs []error
		for _, c := range s.done {
			errs = append(errs, <-c)
		}
		s.err = errors.Join(errs...)
	})
	return s.err
}
