package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// Envoy silently passes requests through when plugin_name matches no
// registered plugin; the tests must notice that instead of trusting a 200.
func TestWrongPluginNameIsDetected(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	h := startHost(t, harness.HostOptions{
		Library: harness.Out("inflow.so"), PluginName: "inflw", Config: inflowConfig(0, b), DefaultUpstream: b.Addr,
	})
	c := client(h)
	// With Inflow running this would be a 404; the pass-through forwards it.
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("nope", "hi"), option.WithHeader(testIDHeader, "w")); err != nil {
		t.Fatalf("pass-through request: %v", err)
	}
	_, r := received(t, "w", b)
	if r.Model != "nope" || r.Header.Get(protocol.HeaderModel) != "" {
		t.Errorf("request was modified (model %q, x-ai-eg-model %q) although no filter ran", r.Model, r.Header.Get(protocol.HeaderModel))
	}
	if inflowRan(t, h) {
		t.Fatal("inflowRan reports true for a plugin name Inflow does not register")
	}
}

// Like Envoy refusing the listener, the host must not start with a config
// the filter rejects.
func TestInvalidConfigRefusesToStart(t *testing.T) {
	t.Parallel()
	cfg := inflowConfig(0)
	cfg["no_such_field"] = true
	h, err := harness.StartHost(testContext(t), t.TempDir(), harness.HostOptions{PluginName: protocol.PluginName, Config: cfg})
	if err == nil {
		h.Close()
		t.Fatal("envoyhost started with a config the filter must reject")
	}
	if !strings.Contains(err.Error(), "failed to parse plugin config") {
		t.Fatalf("want a refusal mentioning the plugin config, got %v", err)
	}
}

// The host accepts plugin_config in the forms Envoy configs use; each must
// reach Inflow's parser intact (a corrupt encoding would be refused).
func TestPluginConfigForms(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b1")
	value, err := json.Marshal(inflowConfig(0, b))
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string]string{
		"udpa TypedStruct": `{"@type":"type.googleapis.com/udpa.type.v1.TypedStruct","type_url":"` + config.TypeURL + `","value":` + string(value) + `}`,
		"Struct":           `{"@type":"type.googleapis.com/google.protobuf.Struct",` + string(value[1:]),
		"bare value":       string(value),
	}
	for name, raw := range forms {
		t.Run(name, func(t *testing.T) {
			h := startHost(t, harness.HostOptions{PluginName: protocol.PluginName, RawConfig: []byte(raw)})
			c := client(h)
			if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi")); err != nil {
				t.Fatalf("chat: %v", err)
			}
			if !inflowRan(t, h) {
				t.Fatal("inflow did not run")
			}
		})
	}
}

// A per-route config goes through NewHttpPluginConfig(is_route_config=1) and
// MergeHttpPluginConfig; Inflow's Merge lets the route's config replace the
// listener's whole.
func TestPerRouteConfigMerge(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	route := map[string]any{
		"models": []any{map[string]any{"name": "mistral", "pool": "p2"}},
		"pools":  []any{map[string]any{"name": "p2", "endpoints": []string{b2.Addr}}},
	}
	h := startHost(t, harness.HostOptions{PluginName: protocol.PluginName, Config: inflowConfig(0, b1), RouteConfig: route})
	c := client(h)
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("mistral", "hi"), option.WithHeader(testIDHeader, "m")); err != nil {
		t.Fatalf("model of the route config: %v", err)
	}
	if b, _ := received(t, "m", b1, b2); b != b2 {
		t.Errorf("mistral served by %s, want b2", b.Name)
	}
	_, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi"))
	apiError(t, err, http.StatusNotFound)
	if !inflowRan(t, h) {
		t.Error("the merged config lost the listener's metrics")
	}
}
