package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	xdstype "github.com/cncf/xds/go/xds/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// RouteTypeURL names the per-route schema: the config a route carries for
// the filter in its typed_per_filter_config (golang ConfigsPerRoute).
const RouteTypeURL = "type.googleapis.com/inflow.v1.RouteConfig"

// RouteConfig binds a route to one of the filter config's pools. Envoy
// Gateway's routes to an InferencePool carry it: such a route decides the
// pool (by path, headers, hostnames), not the model, so the filter picks
// in that pool for a model the filter config does not list, sent as the
// client wrote it, as the Endpoint Picker does. A listed model goes where
// the config says (routes matching x-ai-eg-model then take it there).
//
// It is a schema of its own (not a FilterConfig field) because Envoy
// merges it over the listener's config per route, and it holds only what
// changes with routes, never endpoints: pool churn rewrites no route. It
// is read strictly; a new field will follow FilterConfig's version rule.
type RouteConfig struct {
	// Pool names a pool of the filter config.
	Pool string `json:"pool"`
}

// Validate reports what is wrong with r.
func (r *RouteConfig) Validate() error {
	if !validResourceName(r.Pool) {
		return FieldErrorf("pool", "%q %s", r.Pool, resourceNameRule)
	}
	return nil
}

// IsRouteConfig reports whether a plugin_config holds a RouteConfig
// (a TypedStruct of RouteTypeURL) rather than a FilterConfig.
func IsRouteConfig(a *anypb.Any) bool {
	if a.GetTypeUrl() != typedStructURL && a.GetTypeUrl() != udpaTypedStructURL {
		return false
	}
	var ts xdstype.TypedStruct
	return proto.Unmarshal(a.GetValue(), &ts) == nil && ts.GetTypeUrl() == RouteTypeURL
}

// RouteFromAny decodes and validates a per-route plugin_config.
func RouteFromAny(a *anypb.Any) (*RouteConfig, error) {
	data, err := pluginJSON(a, RouteTypeURL)
	if err != nil {
		return nil, fmt.Errorf("route %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r RouteConfig
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("route %w", describeJSONError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("route config: unexpected data after the JSON object")
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("route config: %w", err)
	}
	return &r, nil
}

// RouteToAny wraps r as a per-route plugin_config: Any{TypedStruct{RouteTypeURL, r}},
// with deterministic bytes (a changed route is a changed RDS resource).
func RouteToAny(r *RouteConfig) (*anypb.Any, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("route config: %w", err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("route config: %w", err)
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("route config: %w", err)
	}
	a := &anypb.Any{}
	err = anypb.MarshalFrom(a, &xdstype.TypedStruct{TypeUrl: RouteTypeURL, Value: s}, proto.MarshalOptions{Deterministic: true})
	if err != nil {
		return nil, fmt.Errorf("route config: %w", err)
	}
	return a, nil
}
