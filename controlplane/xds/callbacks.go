package xds

import (
	"context"
	"fmt"
	"log/slog"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
)

// callbacks count streams, log NACKs and feed the retry cache: a NACK
// means an Envoy refused a resource, which validation here should have
// caught unless it heals by itself (a secret file not there yet), so it
// is an error, and the refused type is sent again after a backoff.
// Resource contents are never logged.
func (s *Server) callbacks() serverv3.Callbacks {
	opened := func(_ context.Context, id int64, typeURL string) error {
		s.metrics.StreamOpened()
		s.log.Debug("xds: stream opened", "stream", id, "type", typeURL)
		return nil
	}
	closed := func(id int64, node *corev3.Node) {
		s.metrics.StreamClosed()
		s.retry.closed(id, node)
		s.log.Info("xds: stream closed", "stream", id, "node", node.GetId())
	}
	return serverv3.CallbackFuncs{
		StreamOpenFunc:        opened,
		StreamClosedFunc:      closed,
		DeltaStreamOpenFunc:   opened,
		DeltaStreamClosedFunc: closed,
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			if e := req.GetErrorDetail(); e != nil {
				s.nack(id, req.GetNode(), req.GetTypeUrl(), req.GetVersionInfo(), e.GetMessage())
			} else if req.GetResponseNonce() == "" {
				s.log.Info("xds: subscribe", "stream", id, "node", req.GetNode().GetId(), "type", req.GetTypeUrl())
			}
			s.retry.onRequest(id, req)
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			s.retry.sent(id, resp.GetTypeUrl(), resp.GetNonce(), nil)
		},
		StreamDeltaRequestFunc: func(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
			if e := req.GetErrorDetail(); e != nil {
				s.nack(id, req.GetNode(), req.GetTypeUrl(), "", e.GetMessage())
			} else if req.GetResponseNonce() == "" {
				s.log.Info("xds: subscribe (delta)", "stream", id, "node", req.GetNode().GetId(), "type", req.GetTypeUrl())
			}
			s.retry.onDeltaRequest(id, req)
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
			names := make([]string, 0, len(resp.GetResources()))
			for _, r := range resp.GetResources() {
				names = append(names, r.GetName())
			}
			s.retry.sent(id, resp.GetTypeUrl(), resp.GetNonce(), names)
		},
	}
}

func (s *Server) nack(stream int64, node *corev3.Node, typeURL, version, msg string) {
	s.metrics.NACK()
	s.log.Error("xds: Envoy rejected an update (NACK)", "stream", stream, "node", node.GetId(),
		"type", typeURL, "kept_version", version, "reason", msg)
}

// cacheLogger routes go-control-plane's logging into slog. It logs
// versions and resource names only, never resource bodies.
func cacheLogger(log *slog.Logger) gcplog.Logger {
	at := func(level slog.Level) func(string, ...any) {
		return func(format string, args ...any) {
			if log.Enabled(context.Background(), level) {
				log.Log(context.Background(), level, "xds cache: "+fmt.Sprintf(format, args...))
			}
		}
	}
	return gcplog.LoggerFuncs{
		DebugFunc: at(slog.LevelDebug),
		InfoFunc:  at(slog.LevelDebug), // per-request chatter
		WarnFunc:  at(slog.LevelWarn),
		ErrorFunc: at(slog.LevelError),
	}
}
