package spec

import "github.com/inflow-gateway/inflow/filter/config"

// DefaultXDSCluster is the cluster name Envoy Gateway's proxies reach this
// control plane by (build/k8s/envoy-gateway adds it to their bootstrap).
const DefaultXDSCluster = "inflow-xds"

// EnvoyGateway is the Envoy Gateway mode: Envoy Gateway stays the xDS
// server of its proxies, which run the Inflow image; the extension server
// (controlplane/envoygateway) inserts the filter into their listeners and
// turns InferencePool clusters into pool destinations, and this control
// plane serves those proxies only what changes with pools: the filter
// config (ECDS) and the pools' members (EDS). So pool churn never
// rewrites a resource Envoy Gateway serves.
//
// Pools are named "<namespace>.<name>" after their InferencePool, as the
// Kubernetes source names them; in a file, list them under that name.
type EnvoyGateway struct {
	// XDSCluster is the cluster of the proxies' bootstrap that reaches this
	// control plane's xDS port. It must be in the bootstrap: Envoy only
	// subscribes through a static cluster, never one delivered over CDS
	// (source/common/config/utility.cc validateClusterName,
	// source/common/upstream/cluster_manager_impl.cc primary_clusters_).
	// Default DefaultXDSCluster.
	XDSCluster string `json:"xds_cluster,omitempty"`
}

// EffectiveXDSCluster is XDSCluster with its default applied.
func (e *EnvoyGateway) EffectiveXDSCluster() string {
	if e.XDSCluster == "" {
		return DefaultXDSCluster
	}
	return e.XDSCluster
}

func validateEnvoyGateway(e *EnvoyGateway) []error {
	if n := e.XDSCluster; n != "" && !config.IsResourceName(n) {
		return []error{config.FieldErrorf("envoy_gateway.xds_cluster", "%q %s", n, config.ResourceNameRule)}
	}
	return nil
}
