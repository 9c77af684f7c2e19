package envoygateway_test

import (
	"context"
	"strings"
	"testing"

	extension "github.com/envoyproxy/gateway/proto/extension"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/translator"
)

type validator interface{ ValidateAll() error }

// Every resource the hooks return is valid Envoy config, and everything
// that is not a Gateway listener or an InferencePool's route or cluster
// comes back unchanged (an empty response).
func TestHooksChangeOnlyInflowsResources(t *testing.T) {
	s := newServer(t)
	for _, in := range inputs(t) {
		resp, err := call(s, in.req)
		if err != nil {
			t.Fatalf("%s: %v", in.name, err)
		}
		var out proto.Message
		switch r := resp.(type) {
		case *extension.PostRouteModifyResponse:
			out = r.GetRoute()
		case *extension.PostClusterModifyResponse:
			out = r.GetCluster()
		case *extension.PostHTTPListenerModifyResponse:
			out = r.GetListener()
		}
		ours := strings.Contains(in.name, "default_inflow_http") || strings.Contains(in.name, "httproute_default_llm")
		switch {
		case ours && (out == nil || !out.ProtoReflect().IsValid()):
			t.Errorf("%s: not modified", in.name)
		case !ours && out != nil && out.ProtoReflect().IsValid():
			t.Errorf("%s: modified a resource that is not Inflow's", in.name)
		case ours:
			if err := out.(validator).ValidateAll(); err != nil {
				t.Errorf("%s: invalid output: %v", in.name, err)
			}
		}
	}
}

func captured1(t *testing.T, name string) proto.Message {
	t.Helper()
	for _, in := range inputs(t) {
		if in.name == name {
			return in.req
		}
	}
	t.Fatalf("no captured input %s", name)
	return nil
}

const (
	httpListener = "PostHTTPListenerModify-default_inflow_http.json"
	llamaRoute   = "PostRouteModify-httproute_default_llm_rule_1_match_0__.json"
	llamaCluster = "PostClusterModify-httproute_default_llm_rule_1.json"
)

// Envoy Gateway translates from scratch each time, but a listener that
// already has the filter must not get a second one.
func TestListenerHookIsIdempotent(t *testing.T) {
	s := newServer(t)
	req := captured1(t, httpListener).(*extension.PostHTTPListenerModifyRequest)
	first, err := s.PostHTTPListenerModify(context.Background(), req)
	if err != nil || first.GetListener() == nil {
		t.Fatalf("first call: %v, %v", first, err)
	}
	again, err := s.PostHTTPListenerModify(context.Background(), &extension.PostHTTPListenerModifyRequest{Listener: first.GetListener()})
	if err != nil || again.GetListener() != nil {
		t.Errorf("second call changed the listener again: %v, %v", again.GetListener(), err)
	}
}

func hcmOf(t *testing.T, l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetDefaultFilterChain().GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	return hcm
}

// A listener's own local reply mappers (and body format) stay, after
// Inflow's, which only match inference requests.
func TestListenerKeepsItsLocalReplies(t *testing.T) {
	s := newServer(t)
	req := captured1(t, httpListener).(*extension.PostHTTPListenerModifyRequest)
	hcm := hcmOf(t, req.GetListener())
	own := &hcmv3.ResponseMapper{
		Filter:     &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_NotHealthCheckFilter{NotHealthCheckFilter: &accesslogv3.NotHealthCheckFilter{}}},
		StatusCode: wrapperspb.UInt32(418),
	}
	hcm.LocalReplyConfig = &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{own}}
	packed, err := translator.Pack("hcm", hcm)
	if err != nil {
		t.Fatal(err)
	}
	req.GetListener().GetDefaultFilterChain().GetFilters()[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: packed}
	resp, err := s.PostHTTPListenerModify(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	mappers := hcmOf(t, resp.GetListener()).GetLocalReplyConfig().GetMappers()
	if len(mappers) < 3 || !proto.Equal(mappers[len(mappers)-1], own) {
		t.Fatalf("the listener's own mapper is not last: %d mappers", len(mappers))
	}
	for _, m := range mappers[1 : len(mappers)-1] {
		if m.GetFilter().GetAndFilter() == nil {
			t.Errorf("an Inflow mapper is not limited to inference requests: %v", m.GetFilter())
		}
	}
}

// A retry policy the route already has (a BackendTrafficPolicy's) is kept.
func TestRouteKeepsItsRetryPolicy(t *testing.T) {
	s := newServer(t)
	req := captured1(t, llamaRoute).(*extension.PostRouteModifyRequest)
	own := &routev3.RetryPolicy{RetryOn: "5xx", NumRetries: wrapperspb.UInt32(7)}
	req.GetRoute().GetRoute().RetryPolicy = own
	resp, err := s.PostRouteModify(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(resp.GetRoute().GetRoute().GetRetryPolicy(), own) {
		t.Errorf("retry policy replaced: %v", resp.GetRoute().GetRoute().GetRetryPolicy())
	}
}

// What the spec says about a pool reaches the next translation; a pool
// the spec does not hold yet gets the filter's defaults.
func TestHooksFollowTheSpec(t *testing.T) {
	s := newServer(t)
	retries := func() uint32 {
		req := captured1(t, llamaRoute).(*extension.PostRouteModifyRequest)
		resp, err := s.PostRouteModify(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetRoute().GetRoute().GetRetryPolicy().GetNumRetries().GetValue()
	}
	if got := retries(); got != 1 {
		t.Fatalf("fallbacks 1 in the spec: %d retries", got)
	}
	if err := s.Update(&spec.Config{EnvoyGateway: &spec.EnvoyGateway{XDSCluster: "elsewhere"}}); err != nil {
		t.Fatal(err)
	}
	if got := retries(); got != 2 {
		t.Errorf("a pool the spec does not hold: %d retries, want the default fallbacks 2", got)
	}
	req := captured1(t, llamaCluster).(*extension.PostClusterModifyRequest)
	resp, err := s.PostClusterModify(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	c := resp.GetCluster()
	if c.GetType() != clusterv3.Cluster_EDS || c.GetEdsClusterConfig().GetEdsConfig().GetApiConfigSource().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "elsewhere" {
		t.Errorf("unknown pool's cluster: %v", c)
	}
	if err := s.Update(&spec.Config{}); err == nil {
		t.Error("a spec without envoy_gateway was accepted")
	}
}
