package xds_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/xds"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
)

// nackBackoff is short so the tests are quick; a timer never fires early,
// so "not before the backoff" is asserted as a lower bound on the time.
const nackBackoff = 50 * time.Millisecond

func serveWithBackoff(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{metrics: &admin.Metrics{}}
	f.srv = xds.New(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), f.metrics, xds.WithNACKBackoff(nackBackoff, 4*nackBackoff))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return f
}

func nackOf(r *discoveryv3.DiscoveryResponse, accepted string) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: accepted, ResponseNonce: r.GetNonce(),
		ErrorDetail: &status.Status{Code: 13, Message: "paths must refer to an existing path in the system"}}
}

// An Envoy that refuses an update (here a cluster whose SDS file is not
// there yet) gets it again after a backoff that doubles per refusal, and
// only then: go-control-plane alone answers a NACK at once, which with
// Envoy is a NACK storm, and after an ACK the next change goes out as
// usual.
func TestNACKedUpdateIsSentAgainAfterABackoff(t *testing.T) {
	f := serveWithBackoff(t)
	ctx := context.Background()
	if _, _, err := f.srv.Publish(ctx, resources(t, "10.0.0.1:8000")); err != nil {
		t.Fatal(err)
	}
	a, err := xdstest.Dial(f.addr, "nacker")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Subscribe(resource.ClusterType); err != nil {
		t.Fatal(err)
	}
	first, err := a.Next(await)
	if err != nil {
		t.Fatal(err)
	}
	r := first
	for i, wait := range []time.Duration{nackBackoff, 2 * nackBackoff, 4 * nackBackoff, 4 * nackBackoff} {
		sent := time.Now()
		if err := a.Send(nackOf(r, "")); err != nil {
			t.Fatal(err)
		}
		if r, err = a.Next(await); err != nil {
			t.Fatalf("NACK %d: no re-send: %v", i+1, err)
		}
		if took := time.Since(sent); took < wait {
			t.Errorf("NACK %d: sent again after %v, before its backoff of %v", i+1, took, wait)
		}
		if r.GetVersionInfo() != first.GetVersionInfo() || r.GetNonce() == first.GetNonce() || len(r.GetResources()) != len(first.GetResources()) {
			t.Errorf("NACK %d: re-sent version %s nonce %s with %d resources, want version %s again under a new nonce",
				i+1, r.GetVersionInfo(), r.GetNonce(), len(r.GetResources()), first.GetVersionInfo())
		}
	}
	if err := a.ACK(r); err != nil {
		t.Fatal(err)
	}
	if extra, err := a.Next(4 * nackBackoff); err == nil {
		t.Fatalf("an ACKed update was sent again: version %s", extra.GetVersionInfo())
	}
	if _, _, err := f.srv.Publish(ctx, resources(t, "10.0.0.2:8000")); err != nil {
		t.Fatal(err)
	}
	next, err := a.Next(await)
	if err != nil || next.GetVersionInfo() != "2" {
		t.Fatalf("after the ACK: %v %v, want version 2", next.GetVersionInfo(), err)
	}
	// the streak ended with the ACK: the next refusal waits the base again
	sent := time.Now()
	if err := a.Send(nackOf(next, r.GetVersionInfo())); err != nil {
		t.Fatal(err)
	}
	again, err := a.Next(await)
	if err != nil || again.GetVersionInfo() != "2" || time.Since(sent) < nackBackoff {
		t.Fatalf("a refused version 2: %v %v after %v", again.GetVersionInfo(), err, time.Since(sent))
	}
	if got := metricsText(t, f.metrics); !strings.Contains(got, "inflow_controlplane_xds_nacks_total 5") {
		t.Errorf("NACKs counted:\n%s", got)
	}
}

// A change published while a refused update waits goes out when the wait
// ends: the re-send carries the current snapshot.
func TestNACKBackoffSendsTheLatestSnapshot(t *testing.T) {
	f := serveWithBackoff(t)
	ctx := context.Background()
	if _, _, err := f.srv.Publish(ctx, resources(t, "10.0.0.1:8000")); err != nil {
		t.Fatal(err)
	}
	a, err := xdstest.Dial(f.addr, "n")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Subscribe(resource.ClusterType); err != nil {
		t.Fatal(err)
	}
	r, err := a.Next(await)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Send(nackOf(r, "")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.srv.Publish(ctx, resources(t, "10.0.0.2:8000")); err != nil {
		t.Fatal(err)
	}
	next, err := a.Next(await)
	if err != nil || next.GetVersionInfo() != "2" {
		t.Fatalf("%v %v, want version 2", next.GetVersionInfo(), err)
	}
	if extra, err := a.Next(2 * nackBackoff); err == nil {
		t.Errorf("a second response (version %s) after the held one", extra.GetVersionInfo())
	}
}

// In the delta protocol the cache alone never sends a refused resource
// again (the client was sent its version); after the backoff it does.
func TestDeltaNACKedResourcesAreSentAgain(t *testing.T) {
	f := serveWithBackoff(t)
	if _, _, err := f.srv.Publish(context.Background(), resources(t, "10.0.0.1:8000")); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), await)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "delta"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: first.GetNonce(),
		ErrorDetail: &status.Status{Code: 13, Message: "refused for the test"}}); err != nil {
		t.Fatal(err)
	}
	again, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(sent) < nackBackoff {
		t.Errorf("sent again after %v, before the backoff", time.Since(sent))
	}
	if names(again) != names(first) || again.GetNonce() == first.GetNonce() {
		t.Errorf("re-sent %s (nonce %s), want %s again", names(again), again.GetNonce(), names(first))
	}
}

func names(r *discoveryv3.DeltaDiscoveryResponse) string {
	var out []string
	for _, res := range r.GetResources() {
		out = append(out, res.GetName())
	}
	return strings.Join(out, ",")
}
