package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"

	"github.com/inflow-gateway/inflow/controlplane/local"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
)

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
	// Watched is the config file whose edits the stack follows.
	Watched string
	cancel  context.CancelFunc
	cp      *local.Server
}

// Start brings the demo up: the simulators, the control plane serving the
// rewritten config over ADS (and following edits of o.Config), and
// envoyhost running inflow.so with exactly what the control plane serves
// (listener, routes, clusters, the filter config over ECDS), as Envoy
// would. The caller must Close the stack.
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
	s := &Stack{Config: cfg, Watched: o.Config, cancel: cancel}
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
	if err := writeAtomic(path, text); err != nil {
		return s, err
	}
	if s.cp, err = local.Start(cctx, path, o.Log); err != nil {
		return s, err
	}
	s.XDSAddr = s.cp.Addr
	addrs := s.Sims.Addrs()
	if err := followEdits(cctx, o.Config, path, func(raw []byte) []byte { return cfg.RewriteEdit(raw, addrs) }, o.Log); err != nil {
		return s, err
	}
	root, err := harness.Root()
	if err != nil {
		return s, err
	}
	pin := map[string]string{}
	if o.Listen != "" {
		pin[cfg.Listener] = o.Listen
	}
	s.Host, err = harness.StartXDSHost(ctx, harness.XDSHostOptions{
		ControlPlane: s.XDSAddr, NodeID: "inflow-demo", Listener: cfg.Listener, ListenerAddresses: pin,
		Admin: o.Admin, LogLevel: "warning", Log: o.Log,
		// the compose demo mounts e2e/secrets at /etc/inflow/secrets
		Mounts: map[string]string{secretsMount: filepath.Join(root, "e2e", "secrets")},
	})
	return s, err
}

// secretsMount is where the compose demo mounts e2e/secrets in the Envoy
// container (e2e/docker-compose.yaml); the config's SDS paths are under it.
const secretsMount = "/etc/inflow/secrets"

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
