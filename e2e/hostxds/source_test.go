package hostxds

import (
	"errors"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

func deltaSource(cluster string) *corev3.ConfigSource {
	return &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
		ApiType: corev3.ApiConfigSource_DELTA_GRPC, TransportApiVersion: corev3.ApiVersion_V3,
		GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}}}},
	}}}
}

// A config source through a cluster names a static cluster of the
// bootstrap, or is refused as Envoy refuses it.
func TestConfigSourceThroughABootstrapCluster(t *testing.T) {
	boot := map[string]Bootstrap{"inflow-xds": {Addr: "127.0.0.1:1"}}
	src, err := configSource(deltaSource("inflow-xds"), "x")
	if err != nil || src != "inflow-xds" || checkBootstrapCluster(boot, src, "x") != nil {
		t.Fatalf("source %q, %v", src, err)
	}
	src, _ = configSource(deltaSource("added-over-cds"), "x")
	if err := checkBootstrapCluster(boot, src, "x"); err == nil || !strings.Contains(err.Error(), "must have a statically defined non-EDS cluster") {
		t.Errorf("a cluster outside the bootstrap: %v", err)
	}
	sotw := deltaSource("inflow-xds")
	sotw.GetApiConfigSource().ApiType = corev3.ApiConfigSource_GRPC
	if _, err := configSource(sotw, "x"); !errors.Is(err, ErrNotModelled) {
		t.Errorf("a state-of-the-world source through a cluster: %v, want not modelled", err)
	}
	if src, err := configSource(&corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}, "x"); err != nil || src != "" {
		t.Errorf("ADS: %q, %v", src, err)
	}
}
