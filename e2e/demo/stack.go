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

	"github.com/inflow-gateway/inflow/controlplane/local"
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
	cp      *local.Server
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
	if s.cp, err = local.Start(cctx, path, o.Log); err != nil {
		return s, err
	}
	s.XDSAddr = s.cp.Addr
	l, err := fromLDS(s.XDSAddr, cfg.Listener)
	if err != nil {
		return s, err
	}
	s.Host, err = harness.StartHost(ctx, o.Dir, harness.HostOptions{
		PluginName: l.Plugin, RawConfig: l.Config, Listen: o.Listen, Admin: o.Admin, LogLevel: "warning",
		// The listener's buffer limit, as Envoy would apply it: without it
		// the host's 1 MiB default would answer 413 where Envoy does not.
		BufferLimit: l.BufferLimit,
	})
	return s, err
}

// fromLDS subscribes like Envoy and returns the golang filter config of the
// named listener.
func fromLDS(addr, listener string) (lf harness.ListenerFilter, err error) {
	e, err := xdstest.Connect(addr, "inflow-demo")
	if err != nil {
		return lf, err
	}
	defer func() { err = errors.Join(err, e.Close()) }()
	if err := e.Await(xdsAwait, xdstest.AllAt("1")); err != nil {
		return lf, fmt.Errorf("control plane: %w", err)
	}
	l, ok := e.State.Listeners[listener]
	if !ok {
		return lf, fmt.Errorf("LDS has no listener %q", listener)
	}
	return harness.FromListener(l, e.State.Extensions)
}

// Close stops the host, the control plane and the simulators.
func (s *Stack) Close() error {
	if s.Host != nil {
		s.Host.Close()
	}
	s.cancel()
	var errs []error
	if s.cp != nil {
		errs = append(errs, s.cp.Close())
	}
	if s.Sims != nil {
		errs = append(errs, s.Sims.Close())
	}
	return errors.Join(errs...)
}

// GenAIMetrics is where the filter serves its GenAI metrics
// (genai_metrics.address), as a host:port to browse: an unspecified IP is
// shown as localhost. Empty when the config serves none.
func (s *Stack) GenAIMetrics() string {
	host, port, err := net.SplitHostPort(s.Config.Spec.GenAIMetrics.Address)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
