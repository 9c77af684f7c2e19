package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	egext "github.com/envoyproxy/gateway/proto/extension"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/inflow-gateway/inflow/internal/poll"
)

// A config with an envoy_gateway section also serves the extension
// server, fed every applied edit; without one nothing listens for it.
func TestServeEnvoyGatewayExtension(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	write := func(fallbacks string) {
		body := "envoy_gateway: {}\npools:\n  - {name: default.llama, endpoints: [], scheduler: {fallbacks: " + fallbacks + "}}\n"
		if err := os.WriteFile(cfg+".tmp", []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfg+".tmp", cfg); err != nil {
			t.Fatal(err)
		}
	}
	write("1")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ext, err := listenExtension(options{config: cfg, egAddr: "127.0.0.1:0"}, log)
	if err != nil || ext == nil {
		t.Fatalf("listenExtension: %v, %v", ext, err)
	}
	if none, err := listenExtension(options{config: example, egAddr: "127.0.0.1:0"}, log); none != nil || err != nil {
		t.Fatalf("a config without envoy_gateway: %v, %v", none, err)
	}
	xdsLis, err1 := net.Listen("tcp", "127.0.0.1:0")
	adminLis, err2 := net.Listen("tcp", "127.0.0.1:0")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, options{config: cfg}, xdsLis, adminLis, nil, ext, log) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	conn, err := grpc.NewClient(ext.lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := egext.NewEnvoyGatewayExtensionClient(conn)
	retries := func() uint32 {
		resp, err := c.PostRouteModify(ctx, &egext.PostRouteModifyRequest{
			Route: &routev3.Route{Name: "r", Action: &routev3.Route_Route{Route: &routev3.RouteAction{}}},
			PostRouteContext: &egext.PostRouteExtensionContext{ExtensionResources: []*egext.ExtensionResource{{
				UnstructuredBytes: []byte(`{"apiVersion":"inference.networking.k8s.io/v1","kind":"InferencePool","metadata":{"name":"llama","namespace":"default"}}`),
			}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetRoute().GetRoute().GetRetryPolicy().GetNumRetries().GetValue()
	}
	if got := retries(); got != 1 {
		t.Fatalf("retries %d, want the file's 1", got)
	}
	write("3")
	poll.Eventually(t, "the extension server to follow the edit", func() bool { return retries() == 3 })
}
