// Command passthrough is the trivial Go HTTP filter the e2e benchmark compares
// Inflow against: it lets every phase continue and only tags the response,
// so the cost measured is the ABI crossings themselves. Build with
// -buildmode=c-shared; plugin name "passthrough".
package main

import (
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"github.com/envoyproxy/envoy/contrib/golang/filters/http/source/go/pkg/http"
)

// PluginName is the name Envoy's golang filter config must use.
const PluginName = "passthrough"

// ResponseHeader is set on every response, so tests can prove the filter ran.
const ResponseHeader = "x-passthrough"

type config struct {
	requests api.CounterMetric
}

type parser struct{}

func (parser) Parse(_ *anypb.Any, callbacks api.ConfigCallbackHandler) (interface{}, error) {
	c := &config{}
	if callbacks != nil { // nil for per-route configs
		c.requests = callbacks.DefineCounterMetric("passthrough.requests")
	}
	return c, nil
}

func (parser) Merge(parent, _ interface{}) interface{} { return parent }

type filter struct {
	api.PassThroughStreamFilter
	cfg *config
}

func (f *filter) EncodeHeaders(h api.ResponseHeaderMap, _ bool) api.StatusType {
	h.Set(ResponseHeader, "1")
	return api.Continue
}

func (f *filter) OnLog(api.RequestHeaderMap, api.RequestTrailerMap, api.ResponseHeaderMap, api.ResponseTrailerMap) {
	if f.cfg.requests != nil {
		f.cfg.requests.Increment(1)
	}
}

func factory(c interface{}, _ api.FilterCallbackHandler) api.StreamFilter {
	return &filter{cfg: c.(*config)}
}

func init() {
	http.RegisterHttpFilterFactoryAndConfigParser(PluginName, factory, parser{})
}

func main() {}
