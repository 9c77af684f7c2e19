package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/split"
)

// serviceBackend creates an AIServiceBackend (OpenAI schema) whose Envoy
// Gateway Backend is the plain-HTTP server at ip:port.
func serviceBackend(ns *kubetest.Namespace, name, ip string, port int32) {
	ns.Create(kubetest.EGBackendsGVR, "Backend", name, map[string]any{
		"endpoints": []any{map[string]any{"ip": map[string]any{"address": ip, "port": int64(port)}}},
	})
	ns.Create(kubetest.ServicesGVR, "AIServiceBackend", name, map[string]any{
		"schema":     map[string]any{"name": "OpenAI"},
		"backendRef": map[string]any{"name": name, "kind": "Backend", "group": "gateway.envoyproxy.io"},
	})
}

func serviceRef(name string, weight, priority int64, override string) map[string]any {
	r := map[string]any{"name": name, "weight": weight, "priority": priority}
	if override != "" {
		r["modelNameOverride"] = override
	}
	return r
}

// testKubeBackendSplit: an AIGatewayRoute rule with refs to several
// AIServiceBackends splits its model by weight, each backend getting its
// own modelNameOverride (the simulators answer 404 to any other name);
// the priority-1 backend gets nothing while the others serve, and all of
// it once both answered 5xx Consecutive5xx times in a row.
func testKubeBackendSplit(t *testing.T, ns *kubetest.Namespace) {
	port := freeLoopbackPort(t)
	s := startKubeStack(t, ns, nil, false)
	a, b, f := s.podServer("gpt", "127.0.5.1", port), s.podServer("gpt-b", "127.0.5.2", port), s.podServer("gpt-f", "127.0.5.3", port)
	serviceBackend(ns, "a", "127.0.5.1", port)
	serviceBackend(ns, "b", "127.0.5.2", port)
	serviceBackend(ns, "f", "127.0.5.3", port)
	ns.Route(kubetest.RoutesGVR, "split", kubetest.ModelRule("gpt",
		serviceRef("a", 3, 0, ""), serviceRef("b", 1, 0, "gpt-b"), serviceRef("f", 1, 1, "gpt-f")))
	s.applied("the split", func(c *config.Config) bool {
		return hasModel("gpt")(c) && len(c.Models[0].BackendRefs) == 3
	})

	const n = 200
	s.chatOK("gpt", n)
	got := counts(a, b, f)
	// 3:1, bounds about 5 standard deviations wide
	if got[2] != 0 || got[0]+got[1] != n || got[0] < 120 || got[0] > 180 {
		t.Fatalf("requests to (a, b, fallback) = %v, want about 150/50/0", got)
	}

	for _, p := range []*podServer{a, b} {
		if err := p.SetFault(sim.Fault{Mode: sim.FaultFail}); err != nil {
			t.Fatal(err)
		}
	}
	failed := 0
	for f.requests() == 0 {
		if _, err := s.chat(testContext(t), "gpt"); err != nil {
			apiError(t, err, http.StatusInternalServerError)
			if failed++; failed > 2*split.Consecutive5xx {
				t.Fatalf("%d failures and the fallback got nothing", failed)
			}
		}
	}
	if failed != 2*split.Consecutive5xx {
		t.Errorf("%d requests failed before the fallback served, want %d (%d per backend)", failed, 2*split.Consecutive5xx, split.Consecutive5xx)
	}
	before := counts(a, b, f)
	s.chatOK("gpt", 20)
	if after := counts(a, b, f); after[0] != before[0] || after[1] != before[1] || after[2]-before[2] != 20 {
		t.Fatalf("with a and b ejected: (a, b, fallback) %v -> %v, want all 20 to the fallback", before, after)
	}
	if v := stat(t, s.host, protocol.StatBackendEjections); v != 2 {
		t.Errorf("%s = %d, want 2", protocol.StatBackendEjections, v)
	}
}

// withHost sends a request with this Host, as a client of a virtual host
// does (the OpenAI client sends the base URL's and refuses to change it, so
// the transport below it does).
func withHost(host string) option.RequestOption {
	return option.WithHTTPClient(&http.Client{Transport: hostTransport(host)})
}

type hostTransport string

func (h hostTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = string(h)
	return http.DefaultTransport.RoundTrip(r)
}

// testKubeHostnamesAndTimeouts: a route's hostnames restrict its models to
// those hosts (others get the no-route 404, shaped as OpenAI's) while a
// route without hostnames serves everywhere; a rule's timeouts.request is
// the route timeout (504 after it) and a rule without it has the AI
// Gateway's 60 s, which a 2 s generation stays well inside.
func testKubeHostnamesAndTimeouts(t *testing.T, ns *kubetest.Namespace) {
	port := freeLoopbackPort(t)
	s := startKubeStack(t, ns, nil, false)
	g := s.podServer(gemma, "127.0.6.1", port, "hosted", "open")
	slow := s.podServer(gemma, "127.0.6.2", port, "impatient", "patient")
	ns.Pod("g", "127.0.6.1", map[string]string{"app": "gemma2"}, true, nil)
	ns.Pod("slow", "127.0.6.2", map[string]string{"app": "slow"}, true, nil)
	ns.Pool("gemma2", map[string]string{"app": "gemma2"}, port)
	ns.Pool("slow", map[string]string{"app": "slow"}, port)
	hosted := kubetest.RouteSpec(kubetest.ModelRule("hosted", kubetest.PoolRef("gemma2")))
	hosted["hostnames"] = []any{"api.example.com"}
	ns.Create(kubetest.RoutesGVR, "AIGatewayRoute", "hosted", hosted)
	impatient := kubetest.ModelRule("impatient", kubetest.PoolRef("slow"))
	impatient["timeouts"] = map[string]any{"request": "1s"}
	ns.Route(kubetest.RoutesGVR, "open", kubetest.ModelRule("open", kubetest.PoolRef("gemma2")),
		impatient, kubetest.ModelRule("patient", kubetest.PoolRef("slow")))
	s.applied("every route", func(c *config.Config) bool {
		return hasModel("hosted")(c) && hasModel("open")(c) && hasModel("impatient")(c) && hasModel("patient")(c) &&
			endpointsAre(poolName(ns, "slow"), hostPort("127.0.6.2", port))(c)
	})

	s.chatOK("hosted", 2, withHost("api.example.com"))
	s.chatOK("open", 2, withHost("api.example.com"))
	s.chatOK("open", 2, withHost("other.example.com"))
	s.chatOK("open", 2)
	before := g.requests()
	for _, host := range []string{"other.example.com", "api.example.com.evil.org", ""} {
		var opts []option.RequestOption
		if host != "" {
			opts = append(opts, withHost(host))
		}
		_, err := s.chat(testContext(t), "hosted", opts...)
		if e := apiError(t, err, http.StatusNotFound); e.Code != "not_found" {
			t.Errorf("Host %q: code %q, want the no-route 404", host, e.Code)
		}
	}
	if n := g.requests() - before; n != 0 {
		t.Fatalf("requests for the hosted model on other hosts reached the pod: %d", n)
	}

	if err := slow.SetFault(sim.Fault{Mode: sim.FaultSlow, Delay: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	_, err := s.chat(testContext(t), "impatient")
	if e := apiError(t, err, http.StatusGatewayTimeout); e.Code != "timeout" {
		t.Errorf("past the 1 s timeouts.request: code %q", e.Code)
	}
	if _, err := s.chat(testContext(t), "patient"); err != nil {
		t.Fatalf("a 2 s generation under the default 60 s timeout: %v", errorBody(err))
	}
	if v := stat(t, s.host, "cluster.pool/"+poolName(ns, "slow")+".upstream_rq_timeout"); v != 1 {
		t.Errorf("upstream_rq_timeout = %d, want 1", v)
	}
}
