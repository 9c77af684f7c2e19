package translator

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/inflow-gateway/inflow/controlplane/spec"
)

// secretHeaders are request headers whose values are credentials.
var secretHeaders = map[string]bool{"authorization": true}

// Redacted returns a copy of r with credential header values replaced, for
// printing and golden files; r itself is what Envoy must receive.
func (r *Resources) Redacted() *Resources {
	out := &Resources{Listeners: r.Listeners, Clusters: r.Clusters}
	for _, rc := range r.Routes {
		rc = proto.Clone(rc).(*routev3.RouteConfiguration)
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				for _, h := range rt.GetRequestHeadersToAdd() {
					if secretHeaders[strings.ToLower(h.GetHeader().GetKey())] {
						h.Header.Value = spec.Redacted
					}
				}
			}
		}
		out.Routes = append(out.Routes, rc)
	}
	return out
}

// WriteYAML writes r, credentials redacted, as YAML in the field names of
// Envoy's own config files (snake_case), keys sorted so output is stable.
func WriteYAML(w io.Writer, r *Resources) error {
	r = r.Redacted()
	doc := map[string][]json.RawMessage{}
	add := func(key string, m proto.Message) error {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			return fmt.Errorf("print %s: %w", key, err)
		}
		doc[key] = append(doc[key], b)
		return nil
	}
	for _, l := range r.Listeners {
		if err := add("listeners", l); err != nil {
			return err
		}
	}
	for _, rc := range r.Routes {
		if err := add("routes", rc); err != nil {
			return err
		}
	}
	for _, c := range r.Clusters {
		if err := add("clusters", c); err != nil {
			return err
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
