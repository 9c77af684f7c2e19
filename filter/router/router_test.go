package router

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/request"
	"github.com/inflow-gateway/inflow/filter/split"
)

// pools scrapes nothing reachable: the test endpoints are closed loopback
// ports, so picks fail open to least-in-flight.
var pools = pool.NewManager()

func weight(w uint32) *uint32 { return &w }

func newRouter(t *testing.T) *Router {
	t.Helper()
	r, err := New(&config.Config{
		Models: []config.Model{
			{Name: "split", Pool: "p", Rewrite: []config.Target{{Model: "base", Weight: weight(3)}, {Model: "lora", Weight: weight(1)}}},
			{Name: "same", Pool: "p", Rewrite: []config.Target{{Model: "same"}}},
			{Name: "ext", Backend: "b"},
		},
		Pools:    []config.Pool{{Name: "p", Endpoints: []string{"127.0.0.1:9", "127.0.0.2:9"}}},
		Backends: []config.Backend{{Name: "b"}},
	}, pools, split.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func TestWeightedSplit(t *testing.T) {
	r := newRouter(t)
	m, err := r.Lookup([]byte("split"))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	const n = 4000
	for range n {
		name, quoted, rewrite := m.Served()
		if !rewrite || string(quoted) != `"`+name+`"` {
			t.Fatalf("Served() = %q, %s, %v", name, quoted, rewrite)
		}
		counts[name]++
	}
	// 3:1 split; the bounds are over 10 standard deviations wide.
	if counts["base"] < 2700 || counts["base"] > 3300 || counts["base"]+counts["lora"] != n {
		t.Fatalf("split %v, want about 3000/1000", counts)
	}
}

func TestRewriteToSameNameIsNoRewrite(t *testing.T) {
	r := newRouter(t)
	m, err := r.Lookup([]byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, rewrite := m.Served(); rewrite {
		t.Fatal("rewriting a model to its own name must not touch the body")
	}
}

func TestRoute(t *testing.T) {
	r := newRouter(t)
	body := []byte(`{"model":"ext","input":"x"}`)
	var req request.Request
	if err := request.Parse(request.Responses, body, &req); err != nil {
		t.Fatal(err)
	}
	d, err := r.Route(&req, body, noHeaders{}, nil)
	if err != nil || d.Endpoints != nil || d.Edits.Any() || d.ServedModel != "ext" {
		t.Fatalf("external backend decision %+v, %v", d, err)
	}
	body = []byte(`{"model":"nope"}`)
	if err := request.Parse(request.Responses, body, &req); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Route(&req, body, noHeaders{}, nil); !errors.Is(err, ErrModelNotFound) {
		t.Fatalf("unknown model: %v", err)
	}
}

type noHeaders struct{}

func (noHeaders) Get(string) (string, bool) { return "", false }

func TestRouteAsksForUsage(t *testing.T) {
	r := newRouter(t)
	off, err := New(&config.Config{
		Models:   []config.Model{{Name: "same", Pool: "p"}},
		Pools:    []config.Pool{{Name: "p", Endpoints: []string{"127.0.0.1:9"}}},
		Usage:    config.Usage{RequestUsage: new(bool)},
		Backends: nil,
	}, pools, split.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	for _, tc := range []struct {
		name   string
		r      *Router
		kind   request.Kind
		body   string
		asked  bool
		output string
	}{
		{"pool chat stream", r, request.ChatCompletions, `{"model":"split","stream":true}`, true, `"stream_options":{"include_usage":true}`},
		{"pool completions stream", r, request.Completions, `{"model":"same","stream":true,"stream_options":{"include_usage":false}}`, true, `{"model":"same","stream":true,"stream_options":{"include_usage":true}}`},
		{"client asked", r, request.ChatCompletions, `{"model":"same","stream":true,"stream_options":{"include_usage":true}}`, false, ""},
		{"not streaming", r, request.ChatCompletions, `{"model":"same"}`, false, ""},
		{"responses stream", r, request.Responses, `{"model":"same","stream":true}`, false, ""},
		{"external backend", r, request.ChatCompletions, `{"model":"ext","stream":true}`, false, ""},
		{"turned off", off, request.ChatCompletions, `{"model":"same","stream":true}`, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req request.Request
			if err := request.Parse(tc.kind, []byte(tc.body), &req); err != nil {
				t.Fatal(err)
			}
			d, err := tc.r.Route(&req, []byte(tc.body), noHeaders{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d.Endpoints != nil {
				d.Endpoints[0].Release()
			}
			if d.UsageRequested != tc.asked {
				t.Fatalf("UsageRequested = %v", d.UsageRequested)
			}
			sent := d.Edits.Apply([]byte(tc.body))
			if tc.asked && !strings.Contains(string(sent), tc.output) {
				t.Fatalf("body %s, want it to contain %s", sent, tc.output)
			}
			if !tc.asked && sent != nil && strings.Contains(string(sent), "stream_options") != strings.Contains(tc.body, "stream_options") {
				t.Fatalf("body changed: %s", sent)
			}
		})
	}
}

func splitRouter(t *testing.T, health *split.Registry) *Router {
	t.Helper()
	r, err := New(&config.Config{
		Models: []config.Model{{Name: "gpt", Backend: "openai", BackendRefs: []config.BackendRef{
			{Backend: "openai", Weight: weight(3)},
			{Backend: "azure", Model: "gpt-deployment"},
			{Backend: "unused", Weight: weight(0)},
			{Backend: "backup", Model: "gpt-backup", Priority: 1},
		}}},
		Backends: []config.Backend{{Name: "openai"}, {Name: "azure"}, {Name: "unused"}, {Name: "backup"}},
	}, pools, health)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// routeGPT routes n requests for "gpt" and counts where they went.
func routeGPT(t *testing.T, r *Router, n int) map[string]int {
	t.Helper()
	body := []byte(`{"model":"gpt","messages":[{"role":"user","content":"hi"}]}`)
	var req request.Request
	if err := request.Parse(request.ChatCompletions, body, &req); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for range n {
		d, err := r.Route(&req, body, noHeaders{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"openai": "gpt", "azure": "gpt-deployment", "backup": "gpt-backup"}[d.Ref.Backend]
		if d.ServedModel != want || d.BackendName() != d.Ref.Backend {
			t.Fatalf("to %s: served %q, want %q", d.Ref.Backend, d.ServedModel, want)
		}
		sent := d.Edits.Apply(body)
		if rewritten := sent != nil; rewritten != (want != "gpt") ||
			rewritten && !strings.Contains(string(sent), `"model":"`+want+`"`) {
			t.Fatalf("to %s: body %s", d.Ref.Backend, sent)
		}
		got[d.Ref.Backend]++
	}
	return got
}

// TestRouteSplitsAcrossBackendRefs: weights within the first priority,
// each backend with its own served name; the fallback only once the
// others are ejected, which survives a config swap.
func TestRouteSplitsAcrossBackendRefs(t *testing.T) {
	health := split.NewRegistry()
	r := splitRouter(t, health)
	got := routeGPT(t, r, 4000)
	if got["openai"] < 2700 || got["openai"] > 3300 || got["openai"]+got["azure"] != 4000 {
		t.Fatalf("split %v, want about 3000 openai / 1000 azure, none to unused or backup", got)
	}
	now := time.Now()
	for _, b := range []string{"openai", "azure"} {
		h := health.Retain(b)
		for range split.Consecutive5xx {
			h.Observe(503, now)
		}
		health.Release(b)
	}
	next := splitRouter(t, health) // the next config keeps the ejections
	if got := routeGPT(t, next, 100); got["backup"] != 100 {
		t.Fatalf("with priority 0 ejected: %v, want all to backup", got)
	}
}

func parse(t *testing.T, body string) (*request.Request, []byte) {
	t.Helper()
	var req request.Request
	if err := request.Parse(request.ChatCompletions, []byte(body), &req); err != nil {
		t.Fatal(err)
	}
	return &req, []byte(body)
}

// A route bound to a pool serves a model name the config does not list
// from it; a listed model goes where the config says.
func TestRouteInPool(t *testing.T) {
	r := newRouter(t)
	req, body := parse(t, `{"model":"whatever-vllm-serves","messages":[]}`)
	d, err := r.RouteInPool("p", req, body, noHeaders{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Endpoints[0].Release()
	if d.Model.Name != "whatever-vllm-serves" || d.ServedModel != "whatever-vllm-serves" || d.Edits.Any() ||
		d.Model.Destination != config.DestinationOverrideHost || len(d.Endpoints) == 0 {
		t.Fatalf("unlisted model in a bound pool: %+v", d)
	}
	req, body = parse(t, `{"model":"same","messages":[]}`)
	if d, err = r.RouteInPool("p", req, body, noHeaders{}, nil); err != nil || d.Model.Name != "same" || d.Model.targets == nil {
		t.Fatalf("a model of the bound pool must be the configured one: %+v, %v", d, err)
	}
	d.Endpoints[0].Release()
	// ext is a backend's model: on a route bound to p it stays the
	// backend's (its x-ai-eg-model route then takes it there).
	req, body = parse(t, `{"model":"ext","messages":[]}`)
	if d, err = r.RouteInPool("p", req, body, noHeaders{}, nil); err != nil || d.Model.Backend != "b" || len(d.Endpoints) != 0 {
		t.Fatalf("a listed model on a bound route goes where the config says: %+v, %v", d, err)
	}
	req, body = parse(t, `{"model":"unlisted","messages":[]}`)
	if _, err := r.RouteInPool("missing", req, body, noHeaders{}, nil); !errors.Is(err, ErrPoolNotFound) {
		t.Errorf("unknown pool: %v, want ErrPoolNotFound", err)
	}
	req, body = parse(t, `{"model":"","messages":[]}`)
	if _, err := r.RouteInPool("p", req, body, noHeaders{}, nil); !errors.Is(err, request.ErrMissingModel) {
		t.Errorf("empty model: %v, want ErrMissingModel", err)
	}
	req, body = parse(t, `{"model":"nope","messages":[]}`)
	if _, err := r.RouteInPool("", req, body, noHeaders{}, nil); !errors.Is(err, ErrModelNotFound) {
		t.Errorf("an unbound route is Route: %v", err)
	}
}
