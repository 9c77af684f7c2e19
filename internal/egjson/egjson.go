// Package egjson is the stable JSON form of the messages Envoy Gateway's
// extension hooks exchange, for the goldens of the extension server's
// hooks (captured from a real Envoy Gateway run, then replayed): protojson
// with every extension type Envoy Gateway's output uses registered, then
// re-indented with sorted keys, since protojson's own spacing is randomised
// on purpose and would make every capture differ.
package egjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	extension "github.com/envoyproxy/gateway/proto/extension"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	// The typed configs inside Envoy Gateway's listeners and clusters and
	// inside what Inflow adds, so Anys print as JSON.
	_ "github.com/cncf/xds/go/xds/type/v3"
	_ "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Hook names, as Envoy Gateway's gRPC methods are named.
const (
	PostRouteModify        = "PostRouteModify"
	PostClusterModify      = "PostClusterModify"
	PostHTTPListenerModify = "PostHTTPListenerModify"
	PostVirtualHostModify  = "PostVirtualHostModify"
	PostEndpointsModify    = "PostEndpointsModify"
	PostTranslateModify    = "PostTranslateModify"
)

// NewRequest is an empty request message of hook.
func NewRequest(hook string) (proto.Message, error) {
	switch hook {
	case PostRouteModify:
		return &extension.PostRouteModifyRequest{}, nil
	case PostClusterModify:
		return &extension.PostClusterModifyRequest{}, nil
	case PostHTTPListenerModify:
		return &extension.PostHTTPListenerModifyRequest{}, nil
	case PostVirtualHostModify:
		return &extension.PostVirtualHostModifyRequest{}, nil
	case PostEndpointsModify:
		return &extension.PostEndpointsModifyRequest{}, nil
	case PostTranslateModify:
		return &extension.PostTranslateModifyRequest{}, nil
	}
	return nil, fmt.Errorf("egjson: unknown hook %q", hook)
}

// Marshal is m as stable, indented JSON.
func Marshal(m proto.Message) ([]byte, error) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("egjson: %w (a type Envoy Gateway uses that this package does not register?)", err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Unmarshal reads Marshal's output (or any protojson) into m.
func Unmarshal(data []byte, m proto.Message) error {
	return protojson.Unmarshal(data, m)
}

// FileName is the testdata name of one hook call: the hook and the name
// of the resource it was called for, safe as a file name.
func FileName(hook string, req proto.Message) string {
	var name string
	switch r := req.(type) {
	case *extension.PostRouteModifyRequest:
		name = r.GetRoute().GetName()
	case *extension.PostClusterModifyRequest:
		name = r.GetCluster().GetName()
	case *extension.PostHTTPListenerModifyRequest:
		name = r.GetListener().GetName()
	case *extension.PostVirtualHostModifyRequest:
		name = r.GetVirtualHost().GetName()
	case *extension.PostEndpointsModifyRequest:
		name = r.GetLoadAssignment().GetClusterName()
	case *extension.PostTranslateModifyRequest:
		name = "translation" // one call per translation
	}
	safe := strings.Map(func(c rune) rune {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' {
			return c
		}
		return '_'
	}, name)
	return hook + "-" + safe + ".json"
}
