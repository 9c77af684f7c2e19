package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/controlplane/xds"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/hostxds"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// Endpoint faults through the host fed by the control plane: what each
// pool destination mode does when the picked endpoint refuses connections
// or resets mid-response, and that no client reaches an address outside
// its pool.

// faultLog is the access log format these tests read: who asked (the
// user-agent), which endpoint answered after how many attempts, and how.
var faultLog = map[string]any{
	"ua": "%REQ(USER-AGENT)%", "upstream": "%UPSTREAM_HOST%", "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
	"code": "%RESPONSE_CODE%", "details": "%RESPONSE_CODE_DETAILS%", "flags": "%RESPONSE_FLAGS%",
}

// faultStack is a pool of simulators behind a host driven by the control
// plane, picking by the session header alone (weight 100 against the
// other scorers' few points), so a test knows where a session goes.
type faultStack struct {
	sims []*sim.Server
	host *harness.Host
	log  string
}

// startFaultStack serves model llama from sims in destination mode with
// these scheduler settings added to the session-only picking.
func startFaultStack(t *testing.T, sims []*sim.Server, destination string, sched map[string]any) *faultStack {
	t.Helper()
	st := &faultStack{sims: sims, log: filepath.Join(t.TempDir(), "access.log")}
	addrs := make([]string, len(sims))
	for i, s := range sims {
		addrs[i] = s.Addr()
	}
	scheduler := map[string]any{"session_header": "x-session", "weights": map[string]any{"session": 100}}
	for k, v := range sched {
		scheduler[k] = v
	}
	st.host, _ = startInflow(t, cpConfig(map[string]any{
		"models":     []any{map[string]any{"name": "llama", "pool": "p1"}},
		"pools":      []any{map[string]any{"name": "p1", "endpoints": addrs, "destination": destination, "scheduler": scheduler}},
		"access_log": map[string]any{"path": st.log, "json_format": faultLog},
	}), harness.XDSHostOptions{})
	waitStat(t, st.host, protocol.PoolStat("p1", protocol.PoolStatStaleEndpoints), func(v int64) bool { return v == 0 })
	return st
}

// chat sends a non-streaming chat for session as user-agent ua.
func (st *faultStack) chat(t *testing.T, session, ua string) (*openai.ChatCompletion, error) {
	t.Helper()
	c := client(st.host)
	return c.Chat.Completions.New(testContext(t), chatParams("llama", "hi"),
		option.WithHeader("x-session", session), option.WithHeader("User-Agent", ua))
}

// line waits for the access log line of ua.
func (st *faultStack) line(t *testing.T, ua string) map[string]any {
	t.Helper()
	return logLineOf(t, st.log, "ua", ua)
}

// sessionOn finds a session key the scheduler sends to target while every
// endpoint is healthy: rendezvous hashing of the key and the endpoints'
// addresses, so it holds for any host serving the same pool.
func (st *faultStack) sessionOn(t *testing.T, target string) string {
	t.Helper()
	for i := range 64 {
		key := fmt.Sprint("session-", i)
		ua := fmt.Sprint("probe-", i)
		if _, err := st.chat(t, key, ua); err != nil {
			t.Fatal(err)
		}
		if st.line(t, ua)["upstream"] == target {
			return key
		}
	}
	t.Fatalf("no session of 64 went to %s", target)
	return ""
}

// A pod that dies refuses connections. With override_host the route
// retries on connect failure and OverrideHost takes the next endpoint of
// the filter's list: the request succeeds there. With original_dst the
// cluster connects to the one address it is given and the route has no
// retry policy: the request fails (OpenAI-shaped 503) and no other host
// sees it.
func TestPrimaryRefusingConnections(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"override_host", "original_dst"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			sims := startSims(t, 2).Servers
			dead, alive := sims[0].Addr(), sims[1].Addr()
			// the probes leave kept-alive upstream connections to the
			// endpoint that dies: a second host never made any, so its
			// first request to the dead endpoint is a refused connect
			key := startFaultStack(t, sims, mode, nil).sessionOn(t, dead)
			// stale metrics are kept for an hour: the dead endpoint stays
			// the pick until a failure cools it down
			st := startFaultStack(t, sims, mode, map[string]any{"staleness": "1h"})
			if err := sims[0].Close(); err != nil {
				t.Fatal(err)
			}
			_, err := st.chat(t, key, "refused")
			line := st.line(t, "refused")
			retries := statOr0(t, st.host, "cluster.pool/p1.upstream_rq_retry")
			if fails := stat(t, st.host, "cluster.pool/p1.upstream_cx_connect_fail"); fails != 1 {
				t.Errorf("upstream_cx_connect_fail = %d, want the one refused connect", fails)
			}
			switch mode {
			case "override_host":
				if err != nil || line["upstream"] != alive || line["attempts"] != float64(2) || retries != 1 {
					t.Errorf("err %v, line %v, %d retries: want the fallback %s's answer on the second attempt", err, line, retries, alive)
				}
			case "original_dst":
				e := apiError(t, err, http.StatusServiceUnavailable)
				if e.Code != "service_unavailable" || !strings.Contains(e.Message, "reset reason: remote connection failure") {
					t.Errorf("error %s, want the OpenAI-shaped upstream connect error", e.RawJSON())
				}
				if line["upstream"] != dead || line["attempts"] != float64(1) || line["flags"] != "UF" || retries != 0 {
					t.Errorf("line %v, %d retries: want one attempt at %s (UF), no retry", line, retries, dead)
				}
			}
		})
	}
}

// An endpoint that resets mid-response is cooled down by the filter: Envoy
// marks the stream's response code details upstream_reset_after_response_
// started{...}, which the filter reads when the stream completes, and the
// endpoint gets no picks for its cooldown (a minute here, so the test does
// not race the clock) although the session hashes to it.
func TestResetMidResponseCoolsTheEndpointDown(t *testing.T) {
	t.Parallel()
	sims := startSims(t, 2).Servers
	faulty, healthy := sims[0], sims[1]
	st := startFaultStack(t, sims, "override_host", map[string]any{"feedback": map[string]any{"cooldown": "1m", "max_cooldown": "1m"}})
	key := st.sessionOn(t, faulty.Addr())
	if err := faulty.SetFault(sim.Fault{Mode: sim.FaultReset, AfterTokens: 2}); err != nil {
		t.Fatal(err)
	}
	params := chatParams("llama", "Tell me a story.")
	params.MaxTokens = openai.Int(5)
	c := client(st.host)
	stream := c.Chat.Completions.NewStreaming(testContext(t), params,
		option.WithHeader("x-session", key), option.WithHeader("User-Agent", "cut"))
	for stream.Next() {
	}
	if stream.Err() == nil {
		t.Fatal("the stream cut by its server ended cleanly")
	}
	if line := st.line(t, "cut"); line["upstream"] != faulty.Addr() || line["code"] != float64(200) ||
		line["details"] != "upstream_reset_after_response_started{protocol_error}" || line["flags"] != "UPE" {
		t.Fatalf("the cut stream's log line %v: want 200 from %s, reset after the response started", line, faulty.Addr())
	}
	// healed: only the cooldown keeps the session off it now
	if err := faulty.SetFault(sim.Fault{}); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		ua := fmt.Sprint("after-", i)
		if _, err := st.chat(t, key, ua); err != nil {
			t.Fatalf("%s: %v", ua, err)
		}
		if line := st.line(t, ua); line["upstream"] != healthy.Addr() || line["attempts"] != float64(1) {
			t.Fatalf("%s: %v during the reset endpoint's cooldown, want %s picked first", ua, line, healthy.Addr())
		}
	}
}

// Whatever a client sends, a request reaches only an endpoint of its
// model's pool, in both destination modes: the filter replaces the
// routing headers Envoy trusts (the ORIGINAL_DST header and metadata, the
// model header the routes match), and an endpoint the control plane took
// out of the pool gets nothing once the host has the edit.
func TestClientNeverReachesAnAddressOutsideThePool(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"override_host", "original_dst"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			member, removed, outsider := startBackend(t, "member"), startBackend(t, "removed"), startBackend(t, "outsider")
			cfg := func(eps ...*harness.Backend) map[string]any {
				c := inflowConfig(0, eps...)
				c["pools"].([]any)[0].(map[string]any)["destination"] = mode
				return cpConfig(c)
			}
			h, path := startInflow(t, cfg(member, removed), harness.XDSHostOptions{})
			writeConfig(t, path, cfg(member))
			if err := h.Agent().Await(testContext(t), hostxds.AllAt("2")); err != nil {
				t.Fatal(err)
			}
			before := len(removed.Requests())
			for i := range 20 {
				req, _ := http.NewRequestWithContext(testContext(t), http.MethodPost, h.URL("/v1/chat/completions"),
					strings.NewReader(chatBody("llama", fmt.Sprint("prompt ", i, strings.Repeat("x", i)))))
				req.Header.Set("content-type", "application/json")
				req.Header.Add(protocol.HeaderDestination, outsider.Addr)
				req.Header.Add(protocol.HeaderDestination, removed.Addr)
				req.Header.Set(protocol.HeaderModel, "llama")
				req.Header.Set("x-envoy-original-dst-host", outsider.Addr)
				doOK(t, req)
			}
			noBackendGot(t, outsider)
			if n := len(removed.Requests()) - before; n != 0 {
				t.Errorf("the endpoint taken out of the pool got %d requests after the edit", n)
			}
			if n := len(member.Requests()); n < 20 {
				t.Errorf("the pool's endpoint got %d of the 20 requests", n)
			}
		})
	}
}

// The Kubernetes sidecar race: the Envoy pod's credentials sidecar writes
// a backend's SDS file a moment after the control plane pushed the cluster
// that names it. Envoy refuses that cluster (the file must exist when the
// cluster is created) and applies the rest of the update, so the pool's
// model serves meanwhile; the control plane sends the refused update again
// after a backoff, and once the file is there the backend serves with the
// injected key. No NACK storm: sends of a refused update are at least the
// base backoff apart (a timer never fires early, so this bound holds on
// any machine), where go-control-plane alone answers each NACK at once.
func TestSecretFileWrittenAfterThePushIsPickedUp(t *testing.T) {
	t.Parallel()
	member, external := startBackend(t, "member"), startBackend(t, "external")
	const container = "/etc/inflow/secrets"
	dir := t.TempDir()
	cfg := inflowConfig(0, member)
	cfg["models"] = append(cfg["models"].([]any), map[string]any{"name": "gpt", "backend": "ext"})
	cfg["backends"] = []any{map[string]any{"name": "ext", "base_url": "http://" + external.Addr + "/v1",
		"api_key": map[string]any{"secret_file": container + "/ext.yaml"}}}
	start := time.Now()
	h, _ := startInflow(t, cpConfig(cfg), harness.XDSHostOptions{Mounts: map[string]string{container: dir}})
	c := client(h)
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi")); err != nil {
		t.Fatalf("the pool's model while the backend's cluster is refused: %v", err)
	}
	_, err := c.Chat.Completions.New(testContext(t), chatParams("gpt", "hi"))
	if e := apiError(t, err, http.StatusServiceUnavailable); e.Code != "service_unavailable" {
		t.Errorf("the refused backend: %s, want Envoy's no-cluster 503, OpenAI-shaped", e.RawJSON())
	}
	// refused, sent again, refused again: then the sidecar writes the file
	if err := h.Agent().Await(testContext(t), func(s hostxds.Status) bool { return s.NACKs >= 2 }); err != nil {
		t.Fatal(err)
	}
	if st := h.Agent().Status(); !strings.Contains(st.LastNACK, "Error adding/updating cluster(s) backend/ext: paths must refer to an existing path in the system: '"+container+"/ext.yaml' does not exist") {
		t.Fatalf("NACK %q, want the backend's cluster refused as Envoy refuses it", st.LastNACK)
	}
	writeAtomic(t, filepath.Join(dir, "ext.key"), "sk-late")
	writeAtomic(t, filepath.Join(dir, "ext.yaml"), sdsFile("ext", container+"/ext.key"))
	poll.Eventually(t, "the backend served once its secret file exists", func() bool {
		_, err := c.Chat.Completions.New(testContext(t), chatParams("gpt", "hi"), option.WithHeader(testIDHeader, "late"))
		return err == nil
	})
	if _, r := received(t, "late", external); r.Header.Get("authorization") != "Bearer sk-late" {
		t.Errorf("authorization %q, want the key from the late file", r.Header.Get("authorization"))
	}
	if err := h.Agent().Await(testContext(t), hostxds.AllAt("1")); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if n, most := h.Agent().Status().NACKs, 1+int(elapsed/xds.DefaultNACKBackoff); n > most {
		t.Errorf("%d NACKs in %v, at most %d with re-sends %v apart: a NACK storm", n, elapsed, most, xds.DefaultNACKBackoff)
	}
}
