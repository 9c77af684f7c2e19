package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/reload"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
)

// xdsAwait bounds waiting for the first snapshot; generous so a loaded
// machine makes the start slow, not failed.
const xdsAwait = 15 * time.Second

// Options configure Start.
type Options struct {
	Config string // control-plane config; default ConfigPath under the repository root
	Listen string // proxy ip:port; default 127.0.0.1:0
	Admin  string // admin ip:port; default 127.0.0.1:0
	Dir    string // scratch directory for the rewritten config and the host's files
	Log    *slog.Logger
}

// Stack is a running demo.
type Stack struct {
	Config  *Config
	Sims    *sim.Cluster
	Host    *harness.Host
	XDSAddr string
	cancel  context.CancelFunc
	done    []chan error
}

// Start brings the demo up: the simulators, the control plane serving the
// rewritten config over ADS, an ADS client that takes the listener's golang
// filter config the way Envoy would, and envoyhost loading inflow.so with
// exactly that plugin config. The caller must Close the stack.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Config == "" {
		if o.Config, err = DefaultConfig(); err != nil {
			return nil, err
		}
	}
	cfg, err := LoadConfig(o.Config)
	if err != nil {
		return nil, err
	}
	if len(cfg.Endpoints) != len(Servers) {
		return nil, fmt.Errorf("%s names %d endpoints, the demo has %d servers", o.Config, len(cfg.Endpoints), len(Servers))
	}
	cctx, cancel := context.WithCancel(ctx)
	s := &Stack{Config: cfg, cancel: cancel}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
		}
	}()

	opts := make([]sim.Options, len(Servers))
	for i, srv := range Servers {
		opts[i] = srv.simOptions(cfg, o.Log)
	}
	if s.Sims, err = sim.StartEach(cctx, opts); err != nil {
		return s, err
	}
	text, err := cfg.Rewritten(s.Sims.Addrs())
	if err != nil {
		return s, err
	}
	path := filepath.Join(o.Dir, "controlplane.yaml")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		return s, err
	}
	if s.XDSAddr, err = s.serveControlPlane(cctx, path, o.Log); err != nil {
		return s, err
	}
	l, err := fromLDS(s.XDSAddr, cfg.Listener)
	if err != nil {
		return s, err
	}
	s.Host, err = harness.StartHost(ctx, o.Dir, harness.HostOptions{
		PluginName: l.plugin, RawConfig: l.config, Listen: o.Listen, Admin: o.Admin, LogLevel: "warning",
		// The listener's buffer limit, as Envoy would apply it: without it
		// the host's 1 MiB default would answer 413 where Envoy does not.
		BufferLimit: l.bufferLimit,
	})
	return s, err
}

// serveControlPlane runs what inflow-controlplane's serve does (load,
// translate, publish, watch) on a loopback port and returns its address.
func (s *Stack) serveControlPlane(ctx context.Context, path string, log *slog.Logger) (string, error) {
	m := &admin.Metrics{}
	srv := xds.New(ctx, log, m)
	r := &reload.Reloader{Path: path, Getenv: os.LookupEnv, Publisher: srv, Metrics: m, Log: log}
	if err := r.Reload(ctx); err != nil {
		return "", err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	served, watched := make(chan error, 1), make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	go func() { watched <- r.Watch(ctx) }()
	s.done = append(s.done, served, watched)
	return lis.Addr().String(), nil
}

// listenerConfig is what envoyhost needs of an LDS listener.
type listenerConfig struct {
	plugin      string
	config      []byte // plugin_config in proto3 JSON, what envoyhost reads
	bufferLimit int
}

// fromLDS subscribes like Envoy and returns the golang filter config of the
// named listener.
func fromLDS(addr, listener string) (lc listenerConfig, err error) {
	e, err := xdstest.Connect(addr, "inflow-demo")
	if err != nil {
		return lc, err
	}
	defer func() { err = errors.Join(err, e.Close()) }()
	if err := e.Await(xdsAwait, xdstest.AllAt("1")); err != nil {
		return lc, fmt.Errorf("control plane: %w", err)
	}
	l, ok := e.State.Listeners[listener]
	if !ok {
		return lc, fmt.Errorf("LDS has no listener %q", listener)
	}
	g, err := translator.GolangFilter(l)
	if err != nil {
		return lc, err
	}
	lc.plugin = g.GetPluginName()
	lc.bufferLimit = int(l.GetPerConnectionBufferLimitBytes().GetValue())
	lc.config, err = protojson.MarshalOptions{UseProtoNames: true}.Marshal(g.GetPluginConfig())
	return lc, err
}

// Close stops the host, the control plane and the simulators.
func (s *Stack) Close() error {
	if s.Host != nil {
		s.Host.Close()
	}
	s.cancel()
	var errs []error
	for _, c := range s.done {
		errs = append(errs, <-c)
	}
	if s.Sims != nil {
		errs = append(errs, s.Sims.Close())
	}
	return errors.Join(errs...)
}
