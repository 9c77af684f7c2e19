package bootstrap_test

import (
	"os"
	"path/filepath"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// envoyYAML is the bootstrap at the repository root.
var envoyYAML = filepath.Join("..", "..", "envoy.yaml")

func load(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	y, err := os.ReadFile(envoyYAML)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	// Unknown fields are errors, as in Envoy; every Any must resolve.
	if err := protojson.Unmarshal(j, &b); err != nil {
		t.Fatal(err)
	}
	return &b
}

func TestBootstrapParsesAndValidates(t *testing.T) {
	b := load(t)
	if err := b.ValidateAll(); err != nil {
		t.Fatal(err)
	}
}

func TestBootstrapTakesEverythingOverADS(t *testing.T) {
	b := load(t)
	dr := b.GetDynamicResources()
	ads := dr.GetAdsConfig()
	if ads.GetApiType() != corev3.ApiConfigSource_GRPC || ads.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("ads_config %v", ads)
	}
	xdsCluster := ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
	if dr.GetLdsConfig().GetAds() == nil || dr.GetCdsConfig().GetAds() == nil {
		t.Error("LDS and CDS must come over ADS")
	}
	var found bool
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != xdsCluster {
			continue
		}
		found = true
		addr := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if addr.GetAddress() != "controlplane" || addr.GetPortValue() != 18000 {
			t.Errorf("control plane address %s:%d, want controlplane:18000 (the documented default)", addr.GetAddress(), addr.GetPortValue())
		}
		if _, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; !ok {
			t.Error("xds_cluster must speak HTTP/2 for gRPC")
		}
	}
	if !found {
		t.Errorf("ads_config names cluster %q, which is not defined", xdsCluster)
	}
	if len(b.GetStaticResources().GetListeners()) != 0 {
		t.Error("listeners belong to the control plane, not the bootstrap")
	}
	if a := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); a != "127.0.0.1" {
		t.Errorf("admin on %q, want loopback", a)
	}
	if b.GetNode().GetId() == "" {
		t.Error("node id is required by ADS")
	}
	if len(b.GetOverloadManager().GetActions()) == 0 {
		t.Error("no overload actions")
	}
}
