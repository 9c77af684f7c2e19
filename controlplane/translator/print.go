package translator

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// printedKeys name each resource type in WriteYAML's output.
var printedKeys = map[string]resource.Type{
	"listeners":         resource.ListenerType,
	"extension_configs": resource.ExtensionConfigType,
	"routes":            resource.RouteType,
	"clusters":          resource.ClusterType,
	"endpoints":         resource.EndpointType,
}

// WriteYAML writes r as YAML in the field names of Envoy's own config
// files (snake_case), keys sorted so output is stable. Nothing in r is a
// secret: API keys stay in Envoy's secret files.
func WriteYAML(w io.Writer, r *Resources) error {
	doc := map[string][]json.RawMessage{}
	byType := r.ByType()
	for key, typeURL := range printedKeys {
		for _, m := range byType[typeURL] {
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
			if err != nil {
				return fmt.Errorf("print %s: %w", key, err)
			}
			doc[key] = append(doc[key], b)
		}
	}
	j, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("print: %w", err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return fmt.Errorf("print: %w", err)
	}
	_, err = w.Write(y)
	return err
}
