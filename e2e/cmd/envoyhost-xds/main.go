// Command envoyhost-xds is envoyhost's xDS client as a process of its own:
// it subscribes to a control plane over ADS as an Envoy node and keeps a
// running `envoyhost serve` (xDS mode) in step with what it is served. Tests
// run the same client in process (harness.StartXDSHost); this command is for
// driving a host by hand:
//
//	build/out/envoyhost serve --library build/out/inflow.so --admin 127.0.0.1:9901 &
//	go run ./e2e/cmd/envoyhost-xds -xds 127.0.0.1:18000 -host-admin 127.0.0.1:9901 \
//	    -mount /etc/inflow/secrets=e2e/secrets
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/inflow-gateway/inflow/e2e/hostxds"
)

type mountFlag map[string]string

func (m mountFlag) String() string { return fmt.Sprint(map[string]string(m)) }

func (m mountFlag) Set(v string) error {
	dir, local, ok := strings.Cut(v, "=")
	if !ok || dir == "" || local == "" {
		return fmt.Errorf("%q is not CONTAINER_DIR=LOCAL_DIR", v)
	}
	m[dir] = local
	return nil
}

func main() {
	o := hostxds.Options{Mounts: map[string]string{}}
	fs := flag.NewFlagSet("envoyhost-xds", flag.ContinueOnError)
	fs.StringVar(&o.XDS, "xds", "127.0.0.1:18000", "the control plane's ADS address")
	fs.StringVar(&o.NodeID, "node-id", "envoyhost", "node id (Envoy's --service-node)")
	fs.StringVar(&o.NodeCluster, "node-cluster", "envoyhost", "node cluster (Envoy's --service-cluster)")
	fs.StringVar(&o.HostAdmin, "host-admin", "127.0.0.1:9901", "envoyhost's --admin address")
	fs.DurationVar(&o.InitialFetchTimeout, "initial-fetch-timeout", 0, "warming bound when a config source sets none (0: Envoy's 15s)")
	fs.Var(mountFlag(o.Mounts), "mount", "CONTAINER_DIR=LOCAL_DIR: where files the config names (SDS, CA bundles) are here (repeatable)")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := hostxds.Start(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "envoyhost-xds:", err)
		os.Exit(1)
	}
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.Close()
			return
		case <-t.C:
			st := a.Status()
			o.Log.Info("envoyhost-xds", "accepted", st.Accepted, "nacks", st.NACKs, "last_nack", st.LastNACK, "pushes", st.Pushes)
		}
	}
}
