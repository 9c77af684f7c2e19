package envoygateway

import (
	"context"
	"slices"

	extension "github.com/envoyproxy/gateway/proto/extension"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/inflow-gateway/inflow/controlplane/translator"
)

const routerFilterName = "envoy.filters.http.router"

// PostHTTPListenerModify puts the Inflow filter into every HTTP connection
// manager of a Gateway listener (one that takes its routes over RDS: Envoy
// Gateway's own listeners, such as its readiness listener, carry inline
// routes and are left alone), right before the router so that Envoy
// Gateway's authentication and rate limits run first. It also maps Envoy's
// local replies to inference requests to OpenAI errors and raises the
// listener's buffer to hold a whole request body. A listener without a
// Gateway HCM comes back unchanged.
func (s *Server) PostHTTPListenerModify(_ context.Context, req *extension.PostHTTPListenerModifyRequest) (*extension.PostHTTPListenerModifyResponse, error) {
	l := req.GetListener()
	st := s.state.Load()
	changed := false
	chains := slices.Clone(l.GetFilterChains())
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(chains, dc)
	}
	for _, chain := range chains {
		for _, f := range chain.GetFilters() {
			ok, err := st.addFilter(f)
			if err != nil {
				return nil, err
			}
			changed = changed || ok
		}
	}
	if !changed {
		return &extension.PostHTTPListenerModifyResponse{}, nil
	}
	if l.GetPerConnectionBufferLimitBytes().GetValue() < st.bufferLimit {
		l.PerConnectionBufferLimitBytes = wrapperspb.UInt32(st.bufferLimit)
	}
	return &extension.PostHTTPListenerModifyResponse{Listener: l}, nil
}

// addFilter inserts the filter into f if f is a Gateway HCM without it.
func (st *state) addFilter(f *listenerv3.Filter) (bool, error) {
	tc := f.GetTypedConfig()
	if tc == nil || !tc.MessageIs((*hcmv3.HttpConnectionManager)(nil)) {
		return false, nil
	}
	var hcm hcmv3.HttpConnectionManager
	if err := tc.UnmarshalTo(&hcm); err != nil {
		return false, err
	}
	if hcm.GetRds() == nil {
		return false, nil
	}
	router := -1
	for i, hf := range hcm.GetHttpFilters() {
		switch hf.GetName() {
		case translator.FilterExtensionName:
			return false, nil // already there
		case routerFilterName:
			router = i
		}
	}
	if router < 0 {
		return false, nil // no router: nothing is forwarded, nothing to pick
	}
	hcm.HttpFilters = slices.Insert(hcm.HttpFilters, router, st.filter)
	hcm.LocalReplyConfig = st.withReplies(hcm.GetLocalReplyConfig())
	packed, err := translator.Pack("http connection manager", &hcm)
	if err != nil {
		return false, err
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: packed}
	return true, nil
}

// withReplies puts the OpenAI mappers before the listener's own: they only
// match replies to inference requests, so every other reply still goes to
// Envoy Gateway's mappers as before.
func (st *state) withReplies(own *hcmv3.LocalReplyConfig) *hcmv3.LocalReplyConfig {
	if own == nil {
		return st.replies
	}
	return &hcmv3.LocalReplyConfig{
		Mappers:    append(slices.Clone(st.replies.GetMappers()), own.GetMappers()...),
		BodyFormat: own.GetBodyFormat(),
	}
}
