// Command filter is the Inflow Envoy Go HTTP filter, built with
// `go build -buildmode=c-shared` into inflow.so and loaded by Envoy's
// envoy.filters.http.golang filter with plugin_name "inflow".
package main

import (
	"github.com/envoyproxy/envoy/contrib/golang/filters/http/source/go/pkg/http"

	"github.com/inflow-gateway/inflow/filter/envoyfilter"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

func init() {
	http.RegisterHttpFilterFactoryAndConfigParser(protocol.PluginName, envoyfilter.Factory, envoyfilter.Parser{})
}

// main is required by -buildmode=c-shared and never runs.
func main() {}
