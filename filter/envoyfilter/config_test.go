package envoyfilter

import (
	"fmt"
	"strings"
	"testing"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// parseRaw runs Parser.Parse on raw JSON as Envoy would deliver it; cb nil
// is a per-route config (Envoy parses those without config callbacks).
func parseRaw(t *testing.T, js string, cb api.ConfigCallbackHandler) *filterConfig {
	t.Helper()
	a, err := toStruct(js)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parser{}.Parse(a, cb)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return parsed.(*filterConfig)
}

const routeConfig = `{"models":[{"name":"mistral","pool":"merge-route"}],"pools":[{"name":"merge-route","endpoints":["127.0.0.3:9"]}]}`

func TestMergeLetsTheRouteConfigReplaceTheListenerConfig(t *testing.T) {
	listenerMetrics := newConfigCallbacks()
	listener := parseRaw(t, testConfig, listenerMetrics)
	defer listener.Destroy()
	route := parseRaw(t, routeConfig, nil)

	_, retained := pools.Retained()
	merged, ok := Parser{}.Merge(listener, route).(*filterConfig)
	if !ok || merged == listener || merged == route {
		t.Fatalf("Merge returned %T %p, want a new config (listener %p, route %p)", merged, merged, listener, route)
	}
	// The route's models, the listener's metrics.
	h := &harness{t: t, cfg: merged, metrics: listenerMetrics}
	r := h.do("POST", "/v1/completions", `{"model":"mistral","prompt":"x"}`)
	r.filter.OnDestroy(api.Normal)
	if r.reply != nil || r.endpoint() != "127.0.0.3:9" {
		t.Fatalf("route model: reply %+v, endpoint %q", r.reply, r.endpoint())
	}
	if r := h.do("POST", "/v1/completions", `{"model":"plain","prompt":"x"}`); r.reply == nil || r.reply.status != 404 {
		t.Errorf("a listener-only model must be unknown under the route config, got %+v", r.reply)
	}
	if got := listenerMetrics.value(protocol.StatRequests); got != 2 {
		t.Errorf("%s = %d on the listener's metrics, want 2", protocol.StatRequests, got)
	}

	// The merged config borrows the route config's pools: destroying it
	// releases nothing; destroying the route config does.
	merged.Destroy()
	if _, n := pools.Retained(); n != retained {
		t.Errorf("destroying the merged config released endpoints: %d -> %d", retained, n)
	}
	route.Destroy()
	if _, n := pools.Retained(); n != retained-1 {
		t.Errorf("destroying the route config: %d endpoints retained, want %d", n, retained-1)
	}
}

func TestMergeKeepsAChildWithItsOwnMetrics(t *testing.T) {
	parent := parseRaw(t, testConfig, newConfigCallbacks())
	defer parent.Destroy()
	child := parseRaw(t, routeConfig, newConfigCallbacks())
	defer child.Destroy()
	if got := (Parser{}).Merge(parent, child); got != child {
		t.Errorf("Merge = %p, want the child %p", got, child)
	}
	if got := (Parser{}).Merge(nil, child); got != child {
		t.Errorf("Merge(nil, child) = %p, want the child %p", got, child)
	}
	if got := (Parser{}).Merge(parent, nil); got != parent {
		t.Errorf("Merge(parent, nil) = %v, want the parent", got)
	}
}

// A control plane upgraded first: the filter serves the config and warns,
// naming the fields and both versions.
func TestNewerConfigIsServedWithAWarning(t *testing.T) {
	js := fmt.Sprintf(`{"version":%d,"models":[{"name":"m","backend":"b","future_field":1}],"backends":[{"name":"b"}]}`, config.SchemaVersion+1)
	c := parseRaw(t, js, newConfigCallbacks())
	defer c.Destroy()
	r := (&harness{t: t, cfg: c}).do("POST", "/v1/completions", `{"model":"m","prompt":"x"}`)
	if r.reply != nil || r.headers.m[protocol.HeaderModel] != "m" {
		t.Fatalf("request under a newer config: reply %+v", r.reply)
	}
	log := testLog.text()
	for _, want := range []string{"models[0].future_field", fmt.Sprintf("schema version %d", config.SchemaVersion+1)} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not say %q:\n%s", want, log)
		}
	}
}

// A route bound to a pool (Envoy Gateway's route to an InferencePool)
// takes the listener's config and picks in that pool for any model.
func TestMergeBindsTheRouteToAPool(t *testing.T) {
	listenerMetrics := newConfigCallbacks()
	listener := parseRaw(t, testConfig, listenerMetrics)
	defer listener.Destroy()
	a, err := config.RouteToAny(&config.RouteConfig{Pool: "gpu"})
	if err != nil {
		t.Fatal(err)
	}
	binding, err := Parser{}.Parse(a, nil)
	if err != nil {
		t.Fatalf("Parse(route config): %v", err)
	}
	merged, ok := Parser{}.Merge(listener, binding).(*filterConfig)
	if !ok || !merged.merged || merged.routePool != "gpu" || merged.router != listener.router {
		t.Fatalf("Merge(listener, binding) = %+v", merged)
	}
	h := &harness{t: t, cfg: merged, metrics: listenerMetrics}
	r := h.do("POST", "/v1/chat/completions", `{"model":"served-by-vllm","messages":[]}`)
	r.filter.OnDestroy(api.Normal)
	if r.reply != nil || (r.endpoint() != "127.0.0.1:9" && r.endpoint() != "127.0.0.2:9") {
		t.Fatalf("bound route: reply %+v, endpoint %q", r.reply, r.endpoint())
	}
	if got, _ := r.headers.Get(protocol.HeaderModel); got != "served-by-vllm" {
		t.Errorf("%s = %q, want the client's model", protocol.HeaderModel, got)
	}
	// Without the binding the same request is an unknown model.
	plain := &harness{t: t, cfg: listener, metrics: listenerMetrics}
	if r := plain.do("POST", "/v1/chat/completions", `{"model":"served-by-vllm","messages":[]}`); r.reply == nil || r.reply.status != 404 {
		t.Errorf("unbound route: %+v, want 404", r.reply)
	}
	// A binding to a pool the listener's config lacks is a 503, not a crash.
	a, _ = config.RouteToAny(&config.RouteConfig{Pool: "not-yet"})
	binding, _ = Parser{}.Parse(a, nil)
	h.cfg = Parser{}.Merge(listener, binding).(*filterConfig)
	if r := h.do("POST", "/v1/chat/completions", `{"model":"m","messages":[]}`); r.reply == nil || r.reply.status != 503 {
		t.Errorf("binding to an unknown pool: %+v, want 503", r.reply)
	}
	merged.Destroy() // borrows the listener's router: releases nothing
	if r := plain.do("POST", "/v1/chat/completions", `{"model":"plain","messages":[]}`); r.reply != nil {
		t.Errorf("destroying a merged binding broke the listener config: %+v", r.reply)
	}
}
