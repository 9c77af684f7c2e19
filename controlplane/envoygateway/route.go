package envoygateway

import (
	"context"

	extension "github.com/envoyproxy/gateway/proto/extension"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/inflow-gateway/inflow/controlplane/translator"
)

// PostRouteModify binds a route to an InferencePool to that pool: the
// filter then picks in it for any model the body names (the route, not the
// model, chose the pool), and the route retries on the picker's fallbacks
// for an override_host pool unless it already has a retry policy (a
// BackendTrafficPolicy's is kept). Other routes come back unchanged.
func (s *Server) PostRouteModify(_ context.Context, req *extension.PostRouteModifyRequest) (*extension.PostRouteModifyResponse, error) {
	pools := inferencePools(req.GetPostRouteContext().GetExtensionResources())
	r := req.GetRoute()
	action := r.GetRoute()
	if len(pools) == 0 || action == nil {
		return &extension.PostRouteModifyResponse{}, nil
	}
	st := s.state.Load()
	binding, err := st.binding(pools[0])
	if err != nil {
		return nil, err
	}
	if r.TypedPerFilterConfig == nil {
		r.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	r.TypedPerFilterConfig[translator.FilterExtensionName] = binding
	if action.RetryPolicy == nil {
		action.RetryPolicy = translator.PoolRetryPolicy(st.pool(pools[0]))
	}
	return &extension.PostRouteModifyResponse{Route: r}, nil
}
