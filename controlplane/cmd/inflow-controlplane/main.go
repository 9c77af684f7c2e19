// Command inflow-controlplane configures Inflow's Envoys over xDS (ADS) from
// a YAML file, pushing every valid edit and refusing invalid ones; with a
// kubernetes section it also serves what the API server holds
// (InferencePools, Pods, AIGatewayRoutes, ...).
//
//	inflow-controlplane --config controlplane/example.yaml
//	inflow-controlplane --config controlplane/example.yaml --print
//	inflow-controlplane --config inflow.yaml --sync-credentials   # the Envoy pod's key sidecar
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/aigatewayroute"
	"github.com/inflow-gateway/inflow/controlplane/configfile"
	"github.com/inflow-gateway/inflow/controlplane/envoygateway"
	"github.com/inflow-gateway/inflow/controlplane/kube"
	"github.com/inflow-gateway/inflow/controlplane/relay"
	"github.com/inflow-gateway/inflow/controlplane/reload"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds"
	"github.com/inflow-gateway/inflow/internal/adminhttp"
)

type options struct {
	config   string
	xdsAddr  string
	xdsTLS   xds.MTLSFiles
	egAddr   string
	egTLS    xds.MTLSFiles
	admin    string
	relay    string
	peers    []string
	print    bool
	logLevel slog.Level
	kube     kubeOptions
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("inflow-controlplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "YAML config file (required); watched for changes")
	fs.StringVar(&o.xdsAddr, "xds-address", ":18000", "gRPC address serving ADS to Envoy (e.g. the pod IP, or 127.0.0.1:18000 for a local Envoy)")
	fs.StringVar(&o.xdsTLS.CertFile, "xds-tls-cert", "", "PEM certificate (chain) of the xDS server; with --xds-tls-key and --xds-client-ca, ADS requires mutual TLS")
	fs.StringVar(&o.xdsTLS.KeyFile, "xds-tls-key", "", "PEM private key of --xds-tls-cert")
	fs.StringVar(&o.xdsTLS.ClientCAFile, "xds-client-ca", "", "PEM CA certificates an Envoy's client certificate must chain to")
	fs.StringVar(&o.egAddr, "envoy-gateway-address", ":"+strconv.Itoa(envoygateway.DefaultPort), "gRPC address of the Envoy Gateway extension server (served when the config has an envoy_gateway section)")
	fs.StringVar(&o.egTLS.CertFile, "envoy-gateway-tls-cert", "", "PEM certificate of the extension server; with --envoy-gateway-tls-key and --envoy-gateway-client-ca, Envoy Gateway must present a client certificate")
	fs.StringVar(&o.egTLS.KeyFile, "envoy-gateway-tls-key", "", "PEM private key of --envoy-gateway-tls-cert")
	fs.StringVar(&o.egTLS.ClientCAFile, "envoy-gateway-client-ca", "", "PEM CA certificates Envoy Gateway's client certificate must chain to")
	fs.StringVar(&o.admin, "admin-address", ":18001", "HTTP address for /metrics, /healthz and /readyz")
	fs.StringVar(&o.relay, "relay-address", "", "address serving the state relay the Envoy replicas share placements and scrapes through (the filter config's shared_state.relay names it); empty: no relay")
	fs.Func("relay-peers", "comma-separated host:port of the other control-plane replicas' relays (a headless Service's name gives every pod; this replica's own address may be among them), so Envoys on different replicas share; needs --relay-address", func(v string) error {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				if _, _, err := net.SplitHostPort(p); err != nil {
					return fmt.Errorf("%q: %w", p, err)
				}
				o.peers = append(o.peers, p)
			}
		}
		return nil
	})
	fs.BoolVar(&o.print, "print", false, "print the generated xDS resources as YAML and exit")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "debug, info, warn or error")
	o.kube.flags(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.config == "" && !o.kube.syncCredentials {
		return o, errors.New("--config is required")
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if len(o.peers) > 0 && o.relay == "" {
		return o, errors.New("--relay-peers needs --relay-address")
	}
	if err := o.xdsTLS.Check(); err != nil {
		return o, fmt.Errorf("--xds-tls-cert, --xds-tls-key, --xds-client-ca: %w", err)
	}
	if err := o.egTLS.Check(); err != nil {
		return o, fmt.Errorf("--envoy-gateway-tls-cert, --envoy-gateway-tls-key, --envoy-gateway-client-ca: %w", err)
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inflow-controlplane:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))
	switch {
	case o.print:
		err = printResources(os.Stdout, o.config)
	case o.kube.syncCredentials:
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = syncCredentials(ctx, o, log)
		stop()
	default:
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = run(ctx, o, log)
		stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inflow-controlplane:", err)
		os.Exit(1)
	}
}

func printResources(w io.Writer, path string) error {
	loaded, err := configfile.Load(path)
	if err != nil {
		return err
	}
	res, err := translator.Translate(loaded.Config)
	if err != nil {
		return err
	}
	return translator.WriteYAML(w, res)
}

// run listens on the configured addresses and serves until ctx ends.
func run(ctx context.Context, o options, log *slog.Logger) error {
	xdsLis, err := net.Listen("tcp", o.xdsAddr)
	if err != nil {
		return fmt.Errorf("xds listen: %w", err)
	}
	adminLis, err := net.Listen("tcp", o.admin)
	if err != nil {
		return errors.Join(fmt.Errorf("admin listen: %w", err), xdsLis.Close())
	}
	var relayLis net.Listener
	if o.relay != "" {
		if relayLis, err = net.Listen("tcp", o.relay); err != nil {
			return errors.Join(fmt.Errorf("relay listen: %w", err), xdsLis.Close(), adminLis.Close())
		}
	}
	ext, err := listenExtension(o, log)
	if err != nil {
		errs := []error{err, xdsLis.Close(), adminLis.Close()}
		if relayLis != nil {
			errs = append(errs, relayLis.Close())
		}
		return errors.Join(errs...)
	}
	return serve(ctx, o, xdsLis, adminLis, relayLis, ext, log)
}

// serve applies the config and serves ADS, the admin endpoints and, when
// relayLis is not nil, the state relay until ctx ends. The first load must
// succeed: starting with no configuration would only hide the mistake
// behind a not-ready probe. ext, when not nil, is the Envoy Gateway
// extension server, fed every config applied.
func serve(ctx context.Context, o options, xdsLis, adminLis, relayLis net.Listener, ext *extension, log *slog.Logger) error {
	config := o.config
	closeListeners := func(err error) error {
		errs := []error{err, xdsLis.Close(), adminLis.Close(), ext.close()}
		if relayLis != nil {
			errs = append(errs, relayLis.Close())
		}
		return errors.Join(errs...)
	}
	metrics := &admin.Metrics{}
	health := admin.NewHandler(metrics, log)
	srv := xds.New(ctx, log, metrics)
	r := &reload.Reloader{
		Path: config, Publisher: srv, Metrics: metrics, Log: log,
		OnApplied: func(uint64) { health.SetReady() },
	}
	source, err := kubeSource(o, srv, log, func(res *kube.Result) {
		health.SetReady()
		if ext != nil {
			if err := ext.srv.Update(res.Config); err != nil {
				log.Error("the Envoy Gateway extension refused the Kubernetes build", "err", err)
			}
		}
	})
	if err != nil {
		return closeListeners(err)
	}
	if source != nil {
		r.Apply = source.SetBase
	} else if ext != nil {
		r.Observe = ext.srv.Update
	}
	if err := r.Reload(ctx); err != nil {
		return closeListeners(err)
	}
	log.Info("serving", "xds", xdsLis.Addr().String(), "mtls", o.xdsTLS.Set(), "admin", adminLis.Addr().String(), "config", config)
	if !o.xdsTLS.Set() && !isLoopback(xdsLis.Addr()) {
		log.Warn("xDS is served without TLS: any client that reaches " + xdsLis.Addr().String() +
			" gets the configuration (it holds no API keys); set --xds-tls-cert, --xds-tls-key and --xds-client-ca to require client certificates")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tasks := []func() error{
		func() error {
			if o.xdsTLS.Set() {
				return srv.ServeMTLS(ctx, xdsLis, o.xdsTLS)
			}
			return srv.Serve(ctx, xdsLis)
		},
		func() error { return r.Watch(ctx) },
		func() error { return adminhttp.Serve(ctx, adminLis, health) },
	}
	if source != nil {
		tasks = append(tasks, func() error { return source.Run(ctx) })
	}
	if relayLis != nil {
		log.Info("serving the state relay", "address", relayLis.Addr().String())
		h := relay.New(metrics)
		tasks = append(tasks, func() error { return relay.Serve(ctx, relayLis, h) })
		if len(o.peers) > 0 {
			log.Info("linking the state relay with its peers", "peers", strings.Join(o.peers, ","))
			tasks = append(tasks, func() error { return h.Peer(ctx, o.peers) })
		}
	}
	if ext != nil {
		tasks = append(tasks, func() error { return ext.serve(ctx, log) })
		if source != nil {
			if c := aigatewayroute.ForSource(source, log); c != nil {
				tasks = append(tasks, func() error { return c.Run(ctx) })
			}
		}
	}
	errc := make(chan error, len(tasks))
	for _, task := range tasks {
		go func() { errc <- task() }()
	}

	// The first to stop (a signal, or a failure) stops the others.
	var errs []error
	for i := range tasks {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
		if i == 0 {
			log.Info("shutting down")
		}
		cancel()
	}
	return errors.Join(errs...)
}

func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
