package spec_test

import (
	"strings"
	"testing"

	"github.com/inflow-gateway/inflow/controlplane/spec"
)

func TestEnvoyGatewaySection(t *testing.T) {
	c, err := spec.Parse([]byte("envoy_gateway: {}\npools: [{name: default.llama, endpoints: []}]\n"))
	if err != nil {
		t.Fatalf("Envoy Gateway mode needs no listeners: %v", err)
	}
	if got := c.EnvoyGateway.EffectiveXDSCluster(); got != spec.DefaultXDSCluster {
		t.Errorf("xds cluster %q, want the default %q", got, spec.DefaultXDSCluster)
	}
	for y, want := range map[string]string{
		"pools: [{name: p, endpoints: []}]\n":                                            "listeners",
		"envoy_gateway: {xds_cluster: 'a b'}\npools: [{name: p, endpoints: []}]\n":       "envoy_gateway.xds_cluster",
		"envoy_gateway: {xds_clustr: x}\npools: [{name: p, endpoints: []}]\n":            "xds_clustr",
		"envoy_gateway: {}\nlisteners: [{name: l, address: nope, port: 1}]\npools: []\n": "listeners[0].address",
	} {
		if _, err := spec.Parse([]byte(y)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error naming %s", y, err, want)
		}
	}
}
