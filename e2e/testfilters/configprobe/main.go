// Command configprobe is an e2e test filter that reports on its own config
// lifecycle, so the tests can see what Envoy (and the host) must do when a
// config is replaced: its plugin_config (a TypedStruct whose value has a
// "name") names the config; every response says which config served it
// (x-configprobe-config) and what became of the configs destroyed so far
// (x-configprobe-destroyed: "name=result,..."), where result is what a
// metric call on the dead config's handle did: "gone" when the SDK panicked
// with CAPIFilterIsGone ("request has been finished"), "alive" when the
// call went through (wrong once Envoy destroyed the config), or the panic
// text. The check runs inside Destroy and again from a goroutine after it.
//
// A request header x-configprobe-hold: <ms> holds the response that long in
// a goroutine, so a stream can outlive its config's replacement.
//
// Plugin name "configprobe".
package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	xds "github.com/cncf/xds/go/xds/type/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"github.com/envoyproxy/envoy/contrib/golang/filters/http/source/go/pkg/http"
)

const (
	PluginName      = "configprobe"
	ConfigHeader    = "x-configprobe-config"
	DestroyedHeader = "x-configprobe-destroyed"
	HoldHeader      = "x-configprobe-hold"
	// lateCheck is when the goroutine touches the dead config's metric again.
	lateCheck = 20 * time.Millisecond
)

type config struct {
	name     string
	requests api.CounterMetric
}

var (
	mu        sync.Mutex
	destroyed = map[string]string{} // config name -> result
)

// Destroy implements api.Config: Envoy dropped the config.
func (c *config) Destroy() {
	if c.requests == nil {
		return // a per-route config has no metrics
	}
	record(c.name+"@destroy", touch(c.requests))
	go func() {
		time.Sleep(lateCheck) // a goroutine outliving the config, as an exporter would
		record(c.name+"@later", touch(c.requests))
	}()
}

func record(key, result string) {
	mu.Lock()
	destroyed[key] = result
	mu.Unlock()
}

// touch calls the metric API and says what happened.
func touch(m api.CounterMetric) (result string) {
	defer func() {
		if p := recover(); p != nil {
			if strings.Contains(fmt.Sprint(p), "request has been finished") {
				result = "gone"
			} else {
				result = fmt.Sprint(p)
			}
		}
	}()
	m.Increment(1)
	return "alive"
}

func report() string {
	mu.Lock()
	defer mu.Unlock()
	parts := make([]string, 0, len(destroyed))
	for k, v := range destroyed {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

type parser struct{}

func (parser) Parse(a *anypb.Any, callbacks api.ConfigCallbackHandler) (interface{}, error) {
	var ts xds.TypedStruct
	if err := a.UnmarshalTo(&ts); err != nil {
		return nil, err
	}
	c := &config{name: ts.GetValue().GetFields()["name"].GetStringValue()}
	if c.name == "" {
		return nil, fmt.Errorf("configprobe: the config needs a name")
	}
	if callbacks != nil {
		c.requests = callbacks.DefineCounterMetric("configprobe." + c.name + ".requests")
	}
	return c, nil
}

func (parser) Merge(parent, _ interface{}) interface{} { return parent }

type filter struct {
	api.PassThroughStreamFilter
	cfg *config
	cb  api.FilterCallbackHandler
}

func (f *filter) DecodeHeaders(h api.RequestHeaderMap, _ bool) api.StatusType {
	f.cfg.requests.Increment(1)
	ms, _ := h.Get(HoldHeader)
	if d, err := strconv.Atoi(ms); err == nil && d > 0 {
		go func() {
			defer f.cb.DecoderFilterCallbacks().RecoverPanic()
			time.Sleep(time.Duration(d) * time.Millisecond)
			f.cb.DecoderFilterCallbacks().Continue(api.Continue)
		}()
		return api.Running
	}
	return api.Continue
}

func (f *filter) EncodeHeaders(h api.ResponseHeaderMap, _ bool) api.StatusType {
	h.Set(ConfigHeader, f.cfg.name)
	h.Set(DestroyedHeader, report())
	return api.Continue
}

func factory(c interface{}, cb api.FilterCallbackHandler) api.StreamFilter {
	return &filter{cfg: c.(*config), cb: cb}
}

func init() {
	http.RegisterHttpFilterFactoryAndConfigParser(PluginName, factory, parser{})
}

func main() {}
