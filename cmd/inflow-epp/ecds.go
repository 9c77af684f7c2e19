package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/inflow-gateway/inflow/filter/config"
)

// ECDS reconnect backoff: Envoy's default xDS retry (500 ms base, 30 s cap).
const (
	ecdsRetryBase = 500 * time.Millisecond
	ecdsRetryMax  = 30 * time.Second
)

// ecds follows the control plane's filter config over ADS as the
// gateway's Envoys do: it subscribes to the ECDS resource that carries the
// golang filter's Config (translator.FilterExtensionName), applies its
// plugin_config, and ACKs it, or NACKs an update it cannot apply and keeps
// serving the last good one.
type ecds struct {
	addr, node, resource string
	loader               *loader
	ready                chan struct{} // closed at the first applied config
}

// run keeps a stream open until ctx ends, reconnecting with backoff.
func (e *ecds) run(ctx context.Context) error {
	wait := ecdsRetryBase
	for {
		err := e.stream(ctx)
		if ctx.Err() != nil {
			return nil
		}
		e.loader.log.Warn("control plane stream ended; reconnecting", "xds", e.addr, "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, ecdsRetryMax)
	}
}

func (e *ecds) stream(ctx context.Context) error {
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: e.node, Cluster: "inflow-epp"}
	req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resource.ExtensionConfigType, ResourceNames: []string{e.resource}}
	if err := s.Send(req); err != nil {
		return err
	}
	accepted := "" // the version_info of the last config applied
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		next := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resource.ExtensionConfigType,
			ResourceNames: []string{e.resource}, ResponseNonce: resp.GetNonce(), VersionInfo: accepted}
		if err := e.apply(resp); err != nil {
			e.loader.log.Error("filter config from the control plane rejected; serving the previous one",
				"version", resp.GetVersionInfo(), "error", err)
			next.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		} else {
			accepted = resp.GetVersionInfo()
			next.VersionInfo = accepted
			e.loader.log.Info("filter config applied", "xds", e.addr, "version", accepted)
			select {
			case <-e.ready:
			default:
				close(e.ready)
			}
		}
		if err := s.Send(next); err != nil {
			return err
		}
	}
}

// apply takes the named TypedExtensionConfig out of resp.
func (e *ecds) apply(resp *discoveryv3.DiscoveryResponse) error {
	for _, a := range resp.GetResources() {
		var tec corev3.TypedExtensionConfig
		if err := a.UnmarshalTo(&tec); err != nil {
			return fmt.Errorf("ECDS resource: %w", err)
		}
		if tec.GetName() != e.resource {
			continue
		}
		var g golangv3alpha.Config
		if err := tec.GetTypedConfig().UnmarshalTo(&g); err != nil {
			return fmt.Errorf("ECDS resource %q: want a golang filter Config: %w", e.resource, err)
		}
		cfg, err := config.FromAny(g.GetPluginConfig())
		if err != nil {
			return err
		}
		return e.loader.apply(cfg)
	}
	return errors.New("the response does not hold resource " + e.resource)
}
