// Command extproc is the test host's ext_proc client: a Go HTTP filter,
// built with -buildmode=c-shared and loaded by e2e/envoyhost like any
// other, that plays Envoy's envoy.filters.http.ext_proc filter (Envoy
// v1.39.0, source/extensions/filters/http/ext_proc) against a real
// ext_proc server over grpc-go: inflow-epp, or the Inference Extension's
// EPP. Its plugin_config is Envoy's own ExternalProcessor message, so the
// tests configure it as users configure Envoy; fields it does not
// implement are refused, naming the field. README.md beside this file
// lists what it does and how it differs from Envoy's client.
package main

import (
	"github.com/envoyproxy/envoy/contrib/golang/filters/http/source/go/pkg/http"
)

// PluginName is the plugin_name the golang filter config must use.
const PluginName = "extproc"

func init() {
	http.RegisterHttpFilterFactoryAndConfigParser(PluginName, factory, parser{})
}

func main() {}
