package envoygateway

import (
	"context"

	extension "github.com/envoyproxy/gateway/proto/extension"

	"github.com/inflow-gateway/inflow/controlplane/translator"
)

// PostClusterModify makes the cluster of a route rule whose backend is an
// InferencePool that pool's destination (the pool's mode: OverrideHost over
// Inflow's EDS, or ORIGINAL_DST). Envoy Gateway calls it only for clusters
// of custom backends; a cluster of another kind comes back unchanged.
func (s *Server) PostClusterModify(_ context.Context, req *extension.PostClusterModifyRequest) (*extension.PostClusterModifyResponse, error) {
	pools := inferencePools(req.GetPostClusterContext().GetBackendExtensionResources())
	c := req.GetCluster()
	if len(pools) == 0 || c == nil {
		return &extension.PostClusterModifyResponse{}, nil
	}
	if len(pools) > 1 {
		// Envoy Gateway's cluster is per rule; the filter picks in one pool.
		s.log.Warn("a rule with several InferencePools: only the first is served", "cluster", c.GetName(), "pools", pools)
	}
	st := s.state.Load()
	if err := translator.SetPoolDestination(c, st.pool(pools[0]), translator.ClusterConfigSource(st.xdsCluster), st.bufferLimit); err != nil {
		return nil, err
	}
	return &extension.PostClusterModifyResponse{Cluster: c}, nil
}
