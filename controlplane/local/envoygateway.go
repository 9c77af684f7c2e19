package local

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"google.golang.org/grpc"

	"github.com/inflow-gateway/inflow/controlplane/aigatewayroute"
	"github.com/inflow-gateway/inflow/controlplane/configfile"
	"github.com/inflow-gateway/inflow/controlplane/envoygateway"
)

// StartEnvoyGateway is StartKubernetes for a config with an envoy_gateway
// section (k nil without a kubernetes section): it also serves the Envoy
// Gateway extension server on a free loopback port (ExtensionAddr), fed
// every config the control plane applies. opts go to the extension's gRPC
// server (tests record what Envoy Gateway sends).
func StartEnvoyGateway(ctx context.Context, path string, log *slog.Logger, k *Kubernetes, opts ...grpc.ServerOption) (*Server, error) {
	loaded, err := configfile.Load(path)
	if err != nil {
		return nil, err
	}
	ext, err := envoygateway.New(loaded.Config, log)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s, err := start(ctx, path, log, k, ext.Update)
	if err != nil {
		return nil, errors.Join(err, lis.Close())
	}
	s.ExtensionAddr = lis.Addr().String()
	ectx, cancel := context.WithCancel(ctx)
	stop := s.cancel
	s.cancel = func() { cancel(); stop() }
	s.done = append(s.done, goErr(func() error { return ext.Serve(ectx, lis, opts...) }))
	if s.Kube != nil {
		if c := aigatewayroute.ForSource(s.Kube, log); c != nil {
			s.done = append(s.done, goErr(func() error { return c.Run(ectx) }))
		}
	}
	return s, nil
}
