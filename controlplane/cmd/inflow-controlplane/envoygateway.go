package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/inflow-gateway/inflow/controlplane/configfile"
	"github.com/inflow-gateway/inflow/controlplane/envoygateway"
	"github.com/inflow-gateway/inflow/controlplane/xds"
)

// extension is the Envoy Gateway extension server of a config with an
// envoy_gateway section.
type extension struct {
	srv *envoygateway.Server
	lis net.Listener
	tls xds.MTLSFiles
}

// listenExtension listens for Envoy Gateway when the config asks for the
// Envoy Gateway mode; nil otherwise. Switching modes needs a restart.
func listenExtension(o options, log *slog.Logger) (*extension, error) {
	loaded, err := configfile.Load(o.config)
	if err != nil {
		return nil, err
	}
	if loaded.Config.EnvoyGateway == nil {
		return nil, nil
	}
	srv, err := envoygateway.New(loaded.Config, log)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", o.egAddr)
	if err != nil {
		return nil, fmt.Errorf("envoy gateway extension listen: %w", err)
	}
	return &extension{srv: srv, lis: lis, tls: o.egTLS}, nil
}

func (e *extension) serve(ctx context.Context, log *slog.Logger) error {
	var opts []grpc.ServerOption
	if e.tls.Set() {
		cfg, err := e.tls.ServerConfig(log)
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	log.Info("serving the Envoy Gateway extension", "address", e.lis.Addr().String(), "mtls", e.tls.Set())
	return e.srv.Serve(ctx, e.lis, opts...)
}

func (e *extension) close() error {
	if e == nil {
		return nil
	}
	return e.lis.Close()
}
