package harness

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/inflow-gateway/inflow/e2e/hostxds"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// XDSHostOptions configures an envoyhost driven by a control plane over
// ADS, with its xDS client (package hostxds) running in this process.
type XDSHostOptions struct {
	// ControlPlane is the ADS server's address: controlplane/local's Addr,
	// inflow-controlplane's --xds-address, or StartADS for hand-built
	// resources.
	ControlPlane string
	// NodeID defaults to a unique "envoyhost-N"; NodeCluster to "envoyhost".
	NodeID, NodeCluster string
	// Listener names the listener whose address Host.Addr gets (and that
	// StartXDSHost waits for); empty: do not wait for any.
	Listener string
	// ListenerAddresses pins listeners (by name) to ip:port; every other
	// listener binds 127.0.0.1 on a free port, whatever address LDS gives.
	ListenerAddresses map[string]string
	// Library is the Go filter every golang filter config runs (its
	// library_path is a path inside the Envoy image); default inflow.so.
	Library     string
	Concurrency int    // default 2
	LogLevel    string // default "warning"
	// DrainTime is --drain-time-s: how long drained connections may stay
	// open (Envoy's default 600 s).
	DrainTime time.Duration
	// InitialFetchTimeout bounds warming (Envoy's default 15 s).
	InitialFetchTimeout time.Duration
	// Mounts maps directories of the Envoy container (paths the config
	// names: SDS files, CA bundles) to local ones, as its volumes do.
	Mounts      map[string]string
	Admin       string // default 127.0.0.1:0
	Env         []string
	DialOptions []grpc.DialOption
	// Bootstrap are the bootstrap's static clusters that config sources
	// may name (an Envoy Gateway proxy's inflow-xds).
	Bootstrap map[string]hostxds.Bootstrap
	Log       *slog.Logger
}

var nodeSeq atomic.Int64

// StartXDSHost runs envoyhost in xDS mode and an xDS client feeding it
// from opts.ControlPlane, and waits for opts.Listener if set. Host.Agent()
// tells what was ACKed or NACKed. The caller must Close the host.
func StartXDSHost(ctx context.Context, opts XDSHostOptions) (*Host, error) {
	if opts.Library == "" {
		opts.Library = Out(protocol.PluginName + ".so")
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 2
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warning"
	}
	if opts.Admin == "" {
		opts.Admin = "127.0.0.1:0"
	}
	if opts.NodeID == "" {
		opts.NodeID = fmt.Sprintf("envoyhost-%d", nodeSeq.Add(1))
	}
	args := []string{"serve", "--library", opts.Library, "--admin", opts.Admin,
		"--concurrency", fmt.Sprint(opts.Concurrency), "--log-level", opts.LogLevel, "--bind-listeners", "127.0.0.1"}
	for name, addr := range opts.ListenerAddresses {
		args = append(args, "--listener-address", name+"="+addr)
	}
	if opts.DrainTime > 0 {
		args = append(args, "--drain-time-s", fmt.Sprintf("%g", opts.DrainTime.Seconds()))
	}
	h, err := spawn(ctx, args, opts.Env)
	if err != nil {
		return nil, err
	}
	h.agent, err = hostxds.Start(context.Background(), hostxds.Options{
		XDS: opts.ControlPlane, NodeID: opts.NodeID, NodeCluster: opts.NodeCluster, HostAdmin: h.Admin,
		DialOptions: opts.DialOptions, InitialFetchTimeout: opts.InitialFetchTimeout, Mounts: opts.Mounts, Log: opts.Log,
		Bootstrap: opts.Bootstrap,
	})
	if err != nil {
		h.Close()
		return nil, err
	}
	if opts.Listener != "" {
		if h.Addr, err = h.ListenerAddr(ctx, opts.Listener); err != nil {
			err = fmt.Errorf("%w (xDS client: %+v)", err, h.agent.Status())
			h.Close()
			return nil, err
		}
	}
	return h, nil
}

// Agent is the host's xDS client (nil for a static-mode host).
func (h *Host) Agent() *hostxds.Agent { return h.agent }
