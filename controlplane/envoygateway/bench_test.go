package envoygateway_test

import (
	"context"
	"net"
	"strings"
	"testing"

	extension "github.com/envoyproxy/gateway/proto/extension"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// BenchmarkHooks answers each call the real Envoy Gateway made, as a
// function call (with a clone of the request, since hooks modify it).
//
//	go test -run '^$' -bench BenchmarkHooks -benchmem ./controlplane/envoygateway/
func BenchmarkHooks(b *testing.B) {
	s := newServer(b)
	for _, in := range inputs(b) {
		b.Run(strings.TrimSuffix(in.name, ".json"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := call(s, proto.Clone(in.req)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHooksGRPC is what Envoy Gateway waits for per call: the gRPC
// round trip over loopback TCP, with the hook.
func BenchmarkHooksGRPC(b *testing.B) {
	s := newServer(b)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := extension.NewEnvoyGatewayExtensionClient(conn)
	for _, in := range inputs(b) {
		b.Run(strings.TrimSuffix(in.name, ".json"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var err error
				switch r := in.req.(type) {
				case *extension.PostRouteModifyRequest:
					_, err = c.PostRouteModify(ctx, r)
				case *extension.PostClusterModifyRequest:
					_, err = c.PostClusterModify(ctx, r)
				case *extension.PostHTTPListenerModifyRequest:
					_, err = c.PostHTTPListenerModify(ctx, r)
				case *extension.PostTranslateModifyRequest:
					_, err = c.PostTranslateModify(ctx, r)
				default:
					b.Fatalf("no hook for %T", r)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
