package check

import (
	"fmt"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// SDSFile decodes an SDS file (a DiscoveryResponse in YAML or JSON, as
// Envoy's filesystem subscription reads path_config_source files) and
// returns its one Secret, validated as Envoy validates it.
func SDSFile(data []byte) (*tlsv3.Secret, error) {
	var resp discoveryv3.DiscoveryResponse
	if err := unmarshalYAML(data, &resp); err != nil {
		return nil, err
	}
	if n := len(resp.GetResources()); n != 1 {
		return nil, fmt.Errorf("%d resources, Envoy takes exactly one secret per file", n)
	}
	var s tlsv3.Secret
	if err := resp.GetResources()[0].UnmarshalTo(&s); err != nil {
		return nil, err
	}
	if err := s.ValidateAll(); err != nil {
		return nil, err
	}
	return &s, nil
}
