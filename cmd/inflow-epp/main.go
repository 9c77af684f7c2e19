// Command inflow-epp is Inflow as an Endpoint Picker: an Envoy ext_proc
// server making the filter's decisions (model, rewrite, endpoint) for a
// stock Envoy or for Envoy Gateway, where an InferencePool's
// endpointPickerRef points at it. Its config is the filter config
// (filter/config): from a file, re-read when the file changes, or from
// Inflow's control plane over ADS (the ECDS resource its Envoys get).
//
//	inflow-epp --config inflow.json --listen unix:///run/inflow/epp.sock
//	inflow-epp --config inflow.yaml --listen :9002 --admin :9090
//	inflow-epp --xds inflow-controlplane:18000 --listen :9002
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/filter/extproc"
	"github.com/inflow-gateway/inflow/internal/adminhttp"
)

type options struct {
	config   string
	xds      string
	nodeID   string
	listen   string
	admin    string
	logLevel slog.Level
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("inflow-epp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "filter config file, JSON or YAML; watched for changes (this or --xds)")
	fs.StringVar(&o.xds, "xds", "", "host:port of Inflow's control plane: follow its filter config over ADS (ECDS, plain text)")
	fs.StringVar(&o.nodeID, "node-id", "inflow-epp", "xDS node id sent with --xds")
	fs.StringVar(&o.listen, "listen", ":9002", "ext_proc gRPC address: host:port, or unix:///path for a Unix socket")
	fs.StringVar(&o.admin, "admin", ":9090", "HTTP address for /metrics, /healthz and /ready (empty: none)")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if (o.config == "") == (o.xds == "") {
		return o, errors.New("exactly one of --config and --xds is required")
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inflow-epp:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel})))
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "inflow-epp:", err)
		os.Exit(1)
	}
}

// listen opens a TCP address or, for unix:///path, a Unix socket
// (replacing a stale socket file a previous run left).
func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	lis, err := listen(o.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var adminLis net.Listener
	if o.admin != "" {
		if adminLis, err = net.Listen("tcp", o.admin); err != nil {
			return errors.Join(fmt.Errorf("admin listen: %w", err), lis.Close())
		}
	}
	return serve(ctx, o, lis, adminLis, log)
}

// serve loads the config, then serves ext_proc (and the admin endpoints)
// until ctx ends. The first load must succeed: an endpoint picker without
// a config could only fail every request.
func serve(ctx context.Context, o options, lis, adminLis net.Listener, log *slog.Logger) error {
	srv := extproc.NewServer(&extproc.Stats{}, log)
	defer srv.Close()
	loader := &loader{path: o.config, server: srv, log: log}
	follow := loader.watch
	if o.xds != "" {
		// Wait for the control plane's first config, as an Envoy warms a
		// listener until its ECDS config arrives.
		e := &ecds{addr: o.xds, node: o.nodeID, resource: translator.FilterExtensionName, loader: loader, ready: make(chan struct{})}
		followCtx, stopFollow := context.WithCancel(ctx)
		defer stopFollow()
		done := make(chan error, 1)
		go func() { done <- e.run(followCtx) }()
		log.Info("waiting for the filter config", "xds", o.xds, "resource", e.resource)
		select {
		case <-e.ready:
		case <-ctx.Done():
			return errors.Join(ctx.Err(), lis.Close(), closeListener(adminLis))
		}
		follow = func(ctx context.Context) error {
			<-ctx.Done()
			stopFollow()
			return <-done
		}
	} else if err := loader.load(); err != nil {
		return errors.Join(err, lis.Close(), closeListener(adminLis))
	}
	g := grpc.NewServer(grpc.MaxRecvMsgSize(extproc.MaxRecvMessageBytes))
	extprocv3.RegisterExternalProcessorServer(g, srv)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(extprocv3.ExternalProcessor_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	log.Info("serving", "ext_proc", lis.Addr().String())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	n := 2
	go func() { errc <- g.Serve(lis) }()
	go func() { errc <- follow(ctx) }()
	if adminLis != nil {
		n++
		log.Info("admin", "address", adminLis.Addr().String())
		go func() { errc <- adminhttp.Serve(ctx, adminLis, adminHandler(srv)) }()
	}
	var errs []error
	for i := range n {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
		if i == 0 {
			log.Info("shutting down")
			cancel()
			// Streams in flight get their answers; new ones are refused.
			go g.GracefulStop()
		}
	}
	return errors.Join(errs...)
}

func closeListener(l net.Listener) error {
	if l == nil {
		return nil
	}
	return l.Close()
}

func adminHandler(srv *extproc.Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_ = srv.Stats().WriteMetrics(w, srv.Router(), time.Now())
	})
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /ready", ok) // serving implies a loaded config
	return mux
}
