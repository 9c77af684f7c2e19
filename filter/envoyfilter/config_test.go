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
