package xds_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/internal/poll"
)

const await = 10 * time.Second

func resources(t *testing.T, endpoints ...string) *translator.Resources {
	t.Helper()
	res, err := translator.Translate(&spec.Config{
		Listeners: []spec.Listener{{Name: "public", Address: "127.0.0.1", Port: 10000}},
		Config: config.Config{
			Models: []config.Model{{Name: "m", Pool: "p"}},
			Pools:  []config.Pool{{Name: "p", Endpoints: endpoints}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

type fixture struct {
	srv     *xds.Server
	metrics *admin.Metrics
	addr    string
}

func serve(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{metrics: &admin.Metrics{}}
	f.srv = xds.New(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), f.metrics)
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

func TestPublishVersionsAreMonotonicAndSkipNoOps(t *testing.T) {
	f := serve(t)
	ctx := context.Background()
	steps := []struct {
		endpoints   []string
		wantVersion uint64
		wantChanged bool
	}{
		{[]string{"10.0.0.1:8000"}, 1, true},
		{[]string{"10.0.0.1:8000"}, 1, false}, // same resources: nothing to push
		{[]string{"10.0.0.2:8000"}, 2, true},
		{[]string{"10.0.0.1:8000"}, 3, true}, // back to old content, still a new version
	}
	for i, s := range steps {
		v, changed, err := f.srv.Publish(ctx, resources(t, s.endpoints...))
		if err != nil {
			t.Fatal(err)
		}
		if v != s.wantVersion || changed != s.wantChanged {
			t.Errorf("step %d: version %d changed %v, want %d %v", i, v, changed, s.wantVersion, s.wantChanged)
		}
	}
}

func TestPublishRefusesInconsistentSnapshot(t *testing.T) {
	f := serve(t)
	for name, breakIt := range map[string]func(*translator.Resources){
		// The listener's RDS name points nowhere (Consistent catches it).
		"no routes": func(r *translator.Resources) { r.Routes = nil },
		// The pool's EDS name points nowhere (Consistent catches it).
		"no endpoints": func(r *translator.Resources) { r.Endpoints = nil },
		// The listener's filter config is missing: Consistent does not
		// check ECDS, the server must, or Envoy warms the listener forever.
		"no filter config": func(r *translator.Resources) { r.Extensions = nil },
	} {
		t.Run(name, func(t *testing.T) {
			res := resources(t, "10.0.0.1:8000")
			breakIt(res)
			if _, _, err := f.srv.Publish(context.Background(), res); !errors.Is(err, xds.ErrSnapshot) {
				t.Fatalf("inconsistent snapshot: %v, want ErrSnapshot", err)
			}
			if f.srv.Version() != 0 {
				t.Errorf("version %d after a refused publish", f.srv.Version())
			}
		})
	}
}

// Every node id gets the same snapshot: the gateway's Envoys are
// interchangeable and nothing is keyed by node.
func TestEveryNodeIsServed(t *testing.T) {
	f := serve(t)
	if _, _, err := f.srv.Publish(context.Background(), resources(t, "10.0.0.1:8000")); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"envoy-a", "envoy-b", ""} {
		t.Run("node="+node, func(t *testing.T) {
			e, err := xdstest.Connect(f.addr, node)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := e.Close(); err != nil {
					t.Error(err)
				}
			}()
			if err := e.Await(await, xdstest.AllAt("1")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNACKIsCounted(t *testing.T) {
	f := serve(t)
	if _, _, err := f.srv.Publish(context.Background(), resources(t, "10.0.0.1:8000")); err != nil {
		t.Fatal(err)
	}
	a, err := xdstest.Dial(f.addr, "nacker")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := a.Subscribe(resource.ClusterType); err != nil {
		t.Fatal(err)
	}
	r, err := a.Next(await)
	if err != nil {
		t.Fatal(err)
	}
	nack := &discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce(), ErrorDetail: &status.Status{Message: "rejected for test"}}
	if err := a.Send(nack); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, "the NACK counted", func() bool {
		return strings.Contains(metricsText(t, f.metrics), "inflow_controlplane_xds_nacks_total 1")
	})
}

func metricsText(t *testing.T, m *admin.Metrics) string {
	t.Helper()
	var b strings.Builder
	if err := m.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// The incremental (delta) protocol is served from the same snapshots.
func TestDeltaADS(t *testing.T) {
	f := serve(t)
	if _, _, err := f.srv.Publish(context.Background(), resources(t, "10.0.0.1:8000")); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), await)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "delta-envoy"}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(first.GetResources()) != 1 || first.GetResources()[0].GetName() != translator.PoolClusterName("p") {
		t.Fatalf("first delta response: %v", first.GetResources())
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, ResponseNonce: first.GetNonce()}); err != nil {
		t.Fatal(err)
	}

	// Only what changed is sent: a second pool adds one cluster.
	res := resources(t, "10.0.0.1:8000")
	extra, err := translator.Translate(&spec.Config{
		Listeners: []spec.Listener{{Name: "public", Address: "127.0.0.1", Port: 10000}},
		Config: config.Config{
			Models: []config.Model{{Name: "m", Pool: "p"}, {Name: "m2", Pool: "q"}},
			Pools:  []config.Pool{{Name: "p", Endpoints: []string{"10.0.0.1:8000"}}, {Name: "q", Endpoints: []string{"10.0.0.9:8000"}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(extra.Clusters) != len(res.Clusters)+1 {
		t.Fatalf("test bug: %d clusters", len(extra.Clusters))
	}
	if _, _, err := f.srv.Publish(context.Background(), extra); err != nil {
		t.Fatal(err)
	}
	second, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(second.GetResources()) != 1 || second.GetResources()[0].GetName() != translator.PoolClusterName("q") {
		t.Fatalf("delta update should carry only the new cluster, got %d resources", len(second.GetResources()))
	}
	var c clusterv3.Cluster
	if err := second.GetResources()[0].GetResource().UnmarshalTo(&c); err != nil {
		t.Fatal(err)
	}
	if c.GetType() != clusterv3.Cluster_EDS {
		t.Errorf("cluster type %v", c.GetType())
	}
}
