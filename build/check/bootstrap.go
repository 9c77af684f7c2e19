package check

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// Bootstrap is an Envoy command line's effective bootstrap: the -c file
// with --config-yaml merged over it (proto MergeFrom, as Envoy does),
// validated like Envoy validates it.
func Bootstrap(file string, args []string) (*bootstrapv3.Bootstrap, error) {
	b, err := parseBootstrap(file)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(args); i++ {
		if args[i] != "--config-yaml" {
			continue
		}
		if i+1 == len(args) {
			return nil, fmt.Errorf("--config-yaml without a value")
		}
		var over bootstrapv3.Bootstrap
		if err := unmarshalYAML([]byte(args[i+1]), &over); err != nil {
			return nil, fmt.Errorf("--config-yaml: %w", err)
		}
		proto.Merge(b, &over)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, err
	}
	return b, nil
}

func parseBootstrap(file string) (*bootstrapv3.Bootstrap, error) {
	y, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	b, err := ParseBootstrap(y)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return b, nil
}

// ParseBootstrap decodes a bootstrap as Envoy does (strictly) and
// validates it.
func ParseBootstrap(y []byte) (*bootstrapv3.Bootstrap, error) {
	var b bootstrapv3.Bootstrap
	if err := unmarshalYAML(y, &b); err != nil {
		return nil, err
	}
	if err := b.ValidateAll(); err != nil {
		return nil, err
	}
	return &b, nil
}

// unmarshalYAML decodes strictly: unknown fields are errors, as in Envoy.
func unmarshalYAML(y []byte, m proto.Message) error {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return err
	}
	return protojson.Unmarshal(j, m)
}

// ControlPlaneAddress is where b's ADS cluster connects: host and port.
func ControlPlaneAddress(b *bootstrapv3.Bootstrap) (string, uint32, error) {
	name := b.GetDynamicResources().GetAdsConfig().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			a := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			return a.GetAddress(), a.GetPortValue(), nil
		}
	}
	return "", 0, fmt.Errorf("ADS cluster %q is not defined", name)
}

// FlagValue returns the value of --name (as "--name v" or "--name=v") in
// args.
func FlagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// Port returns the port of an address like ":18000" or "0.0.0.0:18000".
func Port(addr string) (uint32, error) {
	i := strings.LastIndexByte(addr, ':')
	p, err := strconv.ParseUint(addr[i+1:], 10, 16)
	return uint32(p), err
}
