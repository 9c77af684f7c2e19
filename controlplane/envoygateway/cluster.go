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
	translator.MarkEGAssignment(c)
	if err := translator.SetPoolDestination(c, st.pool(pools[0]), translator.ClusterConfigSource(st.xdsCluster), st.bufferLimit); err != nil {
		return nil, err
	}
	return &extension.PostClusterModifyResponse{Cluster: c}, nil
}

// PostTranslateModify adds, for each pool cluster PostClusterModify made,
// the cluster that keeps Envoy Gateway's load assignment for it subscribed
// (translator.AssignmentHold says why); everything else is returned as it
// came. Envoy Gateway replaces its clusters and secrets with the answer's
// (listeners and routes too when its translation config includes them).
func (s *Server) PostTranslateModify(_ context.Context, req *extension.PostTranslateModifyRequest) (*extension.PostTranslateModifyResponse, error) {
	out := &extension.PostTranslateModifyResponse{Clusters: req.GetClusters(), Secrets: req.GetSecrets(),
		Listeners: req.GetListeners(), Routes: req.GetRoutes()}
	have := make(map[string]bool, len(req.GetClusters()))
	for _, c := range req.GetClusters() {
		have[c.GetName()] = true
	}
	for _, c := range req.GetClusters() {
		if a := translator.EGAssignment(c); a != "" && !have[translator.AssignmentHoldPrefix+a] {
			hold := translator.AssignmentHold(a)
			have[hold.GetName()] = true
			out.Clusters = append(out.Clusters, hold)
		}
	}
	return out, nil
}
