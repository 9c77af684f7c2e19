package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// inflow-epp through the host's ext_proc client: the same decisions as
// the filter, carried by ext_proc messages, in both request body modes.

var eppModes = []string{harness.FullDuplex, harness.Buffered}

// startInflowEPP runs inflow-epp with cfg for the test.
func startInflowEPP(t *testing.T, cfg any) *harness.InflowEPP {
	t.Helper()
	e, err := harness.StartInflowEPP(testContext(t), t.TempDir(), cfg)
	if err != nil {
		t.Fatalf("start inflow-epp: %v", err)
	}
	t.Cleanup(func() {
		exited, err := e.Exited()
		e.Close()
		if exited {
			t.Errorf("inflow-epp exited during the test: %v\n%s", err, e.Stderr())
		} else if t.Failed() {
			t.Logf("inflow-epp log:\n%s", e.Stderr())
		}
	})
	return e
}

// eppHost is the host running the ext_proc client against e in mode.
func eppHost(t *testing.T, e *harness.InflowEPP, mode string, tune func(*harness.HostOptions)) *harness.Host {
	t.Helper()
	opts := harness.ExtProcHost(e.Target, mode)
	if tune != nil {
		tune(&opts)
	}
	return startHost(t, opts)
}

func eppMetric(t *testing.T, e *harness.InflowEPP, name string) float64 {
	t.Helper()
	m, err := e.Metrics(testContext(t))
	if err != nil {
		t.Fatalf("inflow-epp /metrics: %v", err)
	}
	v, ok := m[name]
	if !ok {
		t.Fatalf("inflow-epp /metrics has no %s", name)
	}
	return v
}

func TestInflowEPPRoutesAndRewrites(t *testing.T) {
	t.Parallel()
	a, b := startBackend(t, "a"), startBackend(t, "b")
	e := startInflowEPP(t, map[string]any{
		"models": []map[string]any{{"name": "llama", "pool": "p", "rewrite": []map[string]any{{"model": "llama-3-8b"}}}},
		"pools":  []map[string]any{{"name": "p", "endpoints": []string{a.Addr, b.Addr}}},
	})
	for _, mode := range eppModes {
		t.Run(mode, func(t *testing.T) {
			h := eppHost(t, e, mode, nil)
			before := len(a.Requests()) + len(b.Requests())
			c := client(h)
			resp, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hello"),
				// A client cannot pick the upstream or the model route.
				option.WithHeader(protocol.HeaderDestination, "10.9.9.9:1"),
				option.WithHeader(protocol.HeaderModel, "other"))
			if err != nil {
				t.Fatal(err)
			}
			got := append(a.Requests(), b.Requests()...)
			if len(got) != before+1 {
				t.Fatalf("backends got %d requests, want %d", len(got), before+1)
			}
			r := got[len(got)-1]
			if r.Model != "llama-3-8b" {
				t.Errorf("upstream saw model %q, want the rewrite llama-3-8b", r.Model)
			}
			if !json.Valid(r.Body) {
				t.Errorf("upstream body is not JSON: %q", r.Body)
			}
			if v := r.Header.Get(protocol.HeaderModel); v != "llama" {
				t.Errorf("%s = %q, want llama", protocol.HeaderModel, v)
			}
			dest := r.Header.Get(protocol.HeaderDestination)
			if dest != a.Addr && dest != b.Addr {
				t.Errorf("%s = %q, want one of the pool's endpoints", protocol.HeaderDestination, dest)
			}
			if resp.Model != "llama-3-8b" {
				t.Errorf("response model %q", resp.Model)
			}
			// The client's own ext_proc stats prove it ran, and that the
			// route was recomputed after the mutation.
			if v := stat(t, h, "ext_proc.streams_started"); v != 1 {
				t.Errorf("ext_proc.streams_started = %d", v)
			}
			if v := stat(t, h, "envoyhost.route_cache_cleared"); v < 1 {
				t.Errorf("route cache cleared %d times", v)
			}
		})
	}
	// A stream: the picker reads no response, so unlike the filter it must
	// not ask the server for a usage chunk it could not remove.
	h := eppHost(t, e, harness.FullDuplex, nil)
	na, nb := len(a.Requests()), len(b.Requests())
	status, _ := rawPost(t, h.URL("/v1/chat/completions"), []byte(`{"model":"llama","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	got := append(a.Requests()[na:], b.Requests()[nb:]...)
	if status != http.StatusOK || len(got) != 1 || strings.Contains(string(got[0].Body), "include_usage") {
		t.Errorf("stream: status %d, upstream requests %+v", status, got)
	}
	if v := eppMetric(t, e, protocol.StatModelRewrites); v != float64(len(eppModes)+1) {
		t.Errorf("%s = %v", protocol.StatModelRewrites, v)
	}
	// the picker releases an endpoint when its ext_proc stream ends,
	// which the host closes after the client has the whole response
	poll.Eventually(t, protocol.StatInFlight+" back to 0 after every stream ended", func() bool {
		return eppMetric(t, e, protocol.StatInFlight) == 0
	})
}

func TestInflowEPPRejects(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	e := startInflowEPP(t, map[string]any{
		"models": []map[string]any{{"name": "llama", "pool": "p"}, {"name": "empty", "pool": "none"}},
		"pools":  []map[string]any{{"name": "p", "endpoints": []string{a.Addr}}, {"name": "none", "endpoints": []string{}}},
		"limits": map[string]any{"max_request_body_bytes": 4096},
	})
	for _, mode := range eppModes {
		t.Run(mode, func(t *testing.T) {
			h := eppHost(t, e, mode, nil)
			c := client(h)
			_, err := c.Chat.Completions.New(testContext(t), chatParams("gpt-unknown", "hi"))
			if ae := apiError(t, err, http.StatusNotFound); ae.Code != "model_not_found" {
				t.Errorf("404 code %q", ae.Code)
			}
			_, err = c.Chat.Completions.New(testContext(t), chatParams("empty", "hi"))
			apiError(t, err, http.StatusServiceUnavailable)
			_, err = c.Chat.Completions.New(testContext(t), chatParams("llama", strings.Repeat("x", 5000)))
			apiError(t, err, http.StatusRequestEntityTooLarge)
			status, body := rawPost(t, h.URL("/v1/chat/completions"), []byte(`{"model":`))
			if status != http.StatusBadRequest || !strings.Contains(body, `"invalid_json"`) {
				t.Errorf("bad JSON: %d %s", status, body)
			}
		})
	}
	noBackendGot(t, a)
	for name, want := range map[string]float64{
		protocol.StatRejected404: 2, protocol.StatRejected503: 2, protocol.StatRejected413: 2, protocol.StatRejected400: 2,
	} {
		if v := eppMetric(t, e, name); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
}

func TestInflowEPPShedsWhenSaturated(t *testing.T) {
	t.Parallel()
	sims := startSims(t, 2)
	waiting := 50
	for _, s := range sims.Servers {
		s.SetMetricsOverride(sim.MetricsOverride{NumRequestsWaiting: &waiting})
	}
	e := startInflowEPP(t, map[string]any{
		"models": []map[string]any{{"name": "llama", "pool": "sims"}},
		"pools": []map[string]any{{"name": "sims", "endpoints": sims.Addrs(),
			"scheduler": map[string]any{"scrape_interval": "20ms", "staleness": "1s"}}},
		"objectives": map[string]int{"batch": -1},
	})
	stale := protocol.PromPoolMetric(protocol.PoolStatStaleEndpoints) + `{pool="sims"}`
	poll.Eventually(t, "fresh metrics of every simulator", func() bool {
		m, err := e.Metrics(testContext(t))
		return err == nil && m[stale] == 0 && len(m) > 0
	})
	h := eppHost(t, e, harness.FullDuplex, nil)
	c := client(h)
	var shed error
	poll.Eventually(t, "a sheddable request shed", func() bool {
		_, shed = c.Chat.Completions.New(testContext(t), chatParams("llama", "hi"), option.WithHeader(protocol.HeaderObjective, "batch"))
		return shed != nil
	})
	if ae := apiError(t, shed, http.StatusTooManyRequests); ae.Code != "pool_saturated" {
		t.Fatalf("429 code %q", ae.Code)
	}
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi")); err != nil {
		t.Fatalf("a request that is not sheddable must be served: %v", err)
	}
	if v := eppMetric(t, e, protocol.StatRejected429); v < 1 {
		t.Errorf("%s = %v", protocol.StatRejected429, v)
	}
}

// TestInflowEPPLargeBodies: bodies far over one ext_proc message's
// streamed chunk (62,000 bytes) and over gRPC's default 4 MiB message
// limit go through both modes intact and rewritten, and one over the
// config's limit gets the OpenAI 413 before the whole of it is sent.
func TestInflowEPPLargeBodies(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	e := startInflowEPP(t, map[string]any{
		"models": []map[string]any{{"name": "llama", "pool": "p", "rewrite": []map[string]any{{"model": "llama-3-8b-instruct"}}}},
		"pools":  []map[string]any{{"name": "p", "endpoints": []string{a.Addr}}},
		"limits": map[string]any{"max_request_body_bytes": 7 << 20},
	})
	for _, mode := range eppModes {
		t.Run(mode, func(t *testing.T) {
			h := eppHost(t, e, mode, func(o *harness.HostOptions) { o.BufferLimit = 16 << 20 })
			prompt := strings.Repeat("abcdefghij", (5<<20)/10)
			body, _ := json.Marshal(map[string]any{"model": "llama", "messages": []map[string]string{{"role": "user", "content": prompt}}})
			status, reply := rawPost(t, h.URL("/v1/chat/completions"), body)
			if status != http.StatusOK {
				t.Fatalf("status %d: %.300s", status, reply)
			}
			got := a.Requests()
			r := got[len(got)-1]
			want := bytes.Replace(body, []byte(`"llama"`), []byte(`"llama-3-8b-instruct"`), 1)
			if !bytes.Equal(r.Body, want) {
				t.Fatalf("upstream body: %d bytes, want the %d-byte rewrite", len(r.Body), len(want))
			}
			over, _ := json.Marshal(map[string]any{"model": "llama", "messages": []map[string]string{{"role": "user", "content": prompt + prompt}}})
			status, reply = postReadingEarly(t, h.Addr, "/v1/chat/completions", over)
			if status != http.StatusRequestEntityTooLarge || !strings.Contains(reply, `"request_too_large"`) {
				t.Errorf("over the limit: %d %.300s", status, reply)
			}
		})
	}
}

// TestInflowEPPPassesOtherRequests: a request Inflow does not route passes
// unchanged but for the routing headers a client must not set.
func TestInflowEPPPassesOtherRequests(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	e := startInflowEPP(t, map[string]any{"models": []map[string]any{{"name": "llama", "pool": "p"}},
		"pools": []map[string]any{{"name": "p", "endpoints": []string{a.Addr}}}})
	h := eppHost(t, e, harness.FullDuplex, func(o *harness.HostOptions) { o.DefaultUpstream = a.Addr })
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, h.URL("/health"), nil)
	req.Header.Set(protocol.HeaderModel, "llama")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := a.Requests()
	if len(got) != 1 || got[0].Path != "/health" {
		t.Fatalf("backend got %+v", got)
	}
	if v := got[0].Header.Get(protocol.HeaderModel); v != "" {
		t.Errorf("client-sent %s reached the upstream: %q", protocol.HeaderModel, v)
	}
	// GET /v1/models is answered by the picker itself.
	status, body := rawGet(t, h.URL("/v1/models"))
	if status != http.StatusOK || !strings.Contains(body, `"llama"`) {
		t.Errorf("/v1/models: %d %s", status, body)
	}
}

func rawPost(t *testing.T, url string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("content-type", "application/json")
	return do(t, req)
}

func rawGet(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, url, nil)
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestInflowEPPReloadsItsConfig: an edit of the config file reaches new
// requests; an invalid edit is refused and the last good config serves on.
func TestInflowEPPReloadsItsConfig(t *testing.T) {
	t.Parallel()
	a := startBackend(t, "a")
	cfg := func(model string) map[string]any {
		return map[string]any{"models": []map[string]any{{"name": model, "pool": "p"}},
			"pools": []map[string]any{{"name": "p", "endpoints": []string{a.Addr}}}}
	}
	e := startInflowEPP(t, cfg("llama"))
	h := eppHost(t, e, harness.FullDuplex, nil)
	write := func(v any) {
		data, _ := json.Marshal(v)
		if err := os.WriteFile(e.Config, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg("mistral"))
	poll.Eventually(t, "the new model served", func() bool {
		status, body := rawGet(t, h.URL("/v1/models"))
		return status == http.StatusOK && strings.Contains(body, `"mistral"`)
	})
	write(map[string]any{"models": "not a list"})
	poll.Eventually(t, "the invalid edit reported", func() bool { return strings.Contains(e.Stderr(), "config rejected") })
	c := client(h)
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("mistral", "hi")); err != nil {
		t.Fatalf("after an invalid edit the last good config must serve: %v", err)
	}
}

// TestInflowEPPFollowsTheControlPlane: with --xds, inflow-epp takes the
// filter config the control plane serves its Envoys (the ECDS resource)
// and follows its edits, so the Kubernetes source configures it too.
func TestInflowEPPFollowsTheControlPlane(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "x1"), startBackend(t, "x2")
	path := filepath.Join(t.TempDir(), "inflow.yaml")
	if err := os.WriteFile(path, []byte(controlPlaneYAML(b1.Addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := harness.StartInflowEPPFollowing(testContext(t), t.TempDir(), startControlPlane(t, path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	h := eppHost(t, e, harness.FullDuplex, nil)
	c := client(h)
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi")); err != nil {
		t.Fatal(err)
	}
	if n := len(b1.Requests()); n != 1 || b1.Requests()[0].Model != "llama-3-8b" {
		t.Fatalf("the control plane's pool endpoint got %d requests", n)
	}
	if err := os.WriteFile(path, []byte(controlPlaneYAML(b2.Addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, "requests routed to the edited endpoint", func() bool {
		_, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "hi"))
		return err == nil && len(b2.Requests()) > 0
	})
}

// postReadingEarly sends a POST on a raw connection and reads the answer
// while the body is still being written: a proxy may answer (413) and close
// before the upload ends, which a plain client reports as a write error.
func postReadingEarly(t *testing.T, addr, path string, body []byte) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	go func() {
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, addr, len(body))
		_, _ = conn.Write(body) // fails once the proxy closes: expected
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
