package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/hostxds"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// The golang filter's config lifecycle as Envoy runs it: an ECDS update
// swaps the config for new streams without touching the listener; streams
// in flight finish on the old config, which is destroyed after its last
// stream (on whichever thread that ends); metric handles of a destroyed
// config return CAPIFilterIsGone. An LDS update instead drains the
// listener's connections.

const (
	probeConfigHeader    = "x-configprobe-config"
	probeDestroyedHeader = "x-configprobe-destroyed"
	probeHoldHeader      = "x-configprobe-hold"
)

func startADS(t *testing.T) *harness.ADS {
	t.Helper()
	a, err := harness.StartADS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// probeState is a listener running configprobe over ECDS (config name
// cfg) in front of backend b.
func probeState(t *testing.T, cfg string, b *harness.Backend) resources {
	return resources{}.
		add(resource.ListenerType, listener(t, "l", "r", nil, golangECDS("probe"))).
		add(resource.RouteType, routeConfig("r", prefixRoute("all", "/", "b"))).
		add(resource.ClusterType, staticCluster(t, "b", b.Addr)).
		add(resource.ExtensionConfigType, ecdsResource(t, "probe", probeConfig(t, cfg)))
}

func setADS(t *testing.T, a *harness.ADS, version string, r resources) {
	t.Helper()
	if err := a.Set(context.Background(), version, r); err != nil {
		t.Fatal(err)
	}
}

func startProbeHost(t *testing.T, a *harness.ADS) *harness.Host {
	return startXDSHost(t, a.Addr, harness.XDSHostOptions{Listener: "l", Library: harness.Out(harness.ConfigProbePlugin + ".so")})
}

func awaitAccepted(t *testing.T, h *harness.Host, version string, types ...string) {
	t.Helper()
	if err := h.Agent().Await(testContext(t), hostxds.AllAt(version, types...)); err != nil {
		t.Fatal(err)
	}
}

// probeGet sends one request and returns the config that served it and
// the destroyed-config report.
func probeGet(t *testing.T, c *http.Client, h *harness.Host, hdr map[string]string) (*http.Response, string, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(testContext(t), http.MethodGet, h.URL("/p"), nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, resp.Header.Get(probeConfigHeader), resp.Header.Get(probeDestroyedHeader)
}

// waitStat polls a host counter until cond holds.
func waitStat(t *testing.T, h *harness.Host, name string, cond func(int64) bool) int64 {
	t.Helper()
	var v int64
	poll.Eventually(t, name, func() bool {
		var ok bool
		v, ok = optionalStat(t, h, name)
		return ok && cond(v)
	})
	return v
}

func TestECDSUpdateSwapsTheFilterConfigWithoutADrain(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	a := startADS(t)
	setADS(t, a, "1", probeState(t, "v1", b))
	h := startProbeHost(t, a)
	c := &http.Client{Transport: &http.Transport{}} // one keep-alive connection throughout
	if resp, cfg, _ := probeGet(t, c, h, nil); resp.StatusCode != 200 || cfg != "v1" {
		t.Fatalf("status %d config %q, want 200 from v1", resp.StatusCode, cfg)
	}
	setADS(t, a, "2", probeState(t, "v2", b))
	awaitAccepted(t, h, "2", resource.ExtensionConfigType)
	resp, cfg, destroyed := probeGet(t, c, h, nil)
	if resp.StatusCode != 200 || cfg != "v2" || resp.Close {
		t.Fatalf("after the ECDS update: status %d config %q close %v, want v2 on the same open connection", resp.StatusCode, cfg, resp.Close)
	}
	// v1 had no stream left: destroyed at once, and its metric handle is gone
	if !strings.Contains(destroyed, "v1@destroy=gone") {
		t.Errorf("destroyed configs %q: want v1's metric call inside Destroy to get CAPIFilterIsGone", destroyed)
	}
	poll.Eventually(t, "the goroutine's late metric call", func() bool {
		_, _, d := probeGet(t, c, h, nil)
		return strings.Contains(d, "v1@later=gone")
	})
	if n := stat(t, h, "listener.l.downstream_cx_drained"); n != 0 {
		t.Errorf("%d connections drained by an ECDS update", n)
	}
	if n := stat(t, h, "envoyhost.plugin_configs_destroyed"); n != 1 {
		t.Errorf("plugin_configs_destroyed = %d, want 1", n)
	}
}

// A stream that started on a config finishes on it; the config dies with
// that stream, on its worker thread.
func TestOldConfigDiesWithItsLastStreamOnTheWorker(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	a := startADS(t)
	setADS(t, a, "1", probeState(t, "v1", b))
	h := startProbeHost(t, a)
	held := make(chan string, 1)
	go func() {
		_, cfg, _ := probeGet(t, &http.Client{Transport: &http.Transport{}}, h, map[string]string{probeHoldHeader: "800"})
		held <- cfg
	}()
	waitStat(t, h, "configprobe.v1.requests", func(v int64) bool { return v == 1 }) // the held stream is in Go
	setADS(t, a, "2", probeState(t, "v2", b))
	awaitAccepted(t, h, "2", resource.ExtensionConfigType)
	c := &http.Client{Transport: &http.Transport{}}
	if _, cfg, _ := probeGet(t, c, h, nil); cfg != "v2" {
		t.Fatalf("a new stream after the update got %q, want v2", cfg)
	}
	if n := stat(t, h, "envoyhost.plugin_configs_destroyed"); n != 0 {
		t.Errorf("v1 destroyed (%d) while a stream still uses it", n)
	}
	if cfg := <-held; cfg != "v1" {
		t.Errorf("the held stream finished on %q, want v1 (in-flight streams keep their config)", cfg)
	}
	waitStat(t, h, "envoyhost.plugin_configs_destroyed_on_worker", func(v int64) bool { return v == 1 })
	poll.Eventually(t, "v1's Destroy ran", func() bool {
		_, _, d := probeGet(t, c, h, nil)
		return strings.Contains(d, "v1@destroy=gone")
	})
}

// Swaps under steady load: every request answered, by one of the configs,
// no connection drained, and every replaced config destroyed.
func TestFilterConfigSwapsUnderLoad(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	b.NoRecord = true
	a := startADS(t)
	setADS(t, a, "1", probeState(t, "v1", b))
	h := startProbeHost(t, a)
	const swaps, clients = 20, 4
	stop := make(chan struct{})
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, h.URL("/load"), nil)
				resp, err := c.Do(req)
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get(probeConfigHeader), "v") {
					failed.Add(1)
				}
			}
		}()
	}
	for i := 2; i <= swaps+1; i++ {
		v := fmt.Sprint(i)
		setADS(t, a, v, probeState(t, "v"+v, b))
		awaitAccepted(t, h, v, resource.ExtensionConfigType)
		time.Sleep(20 * time.Millisecond) // let load run on each config; the loop measures nothing
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed across %d config swaps", failed.Load(), sent.Load(), swaps)
	}
	if n := stat(t, h, "listener.l.downstream_cx_drained"); n != 0 {
		t.Errorf("%d connections drained", n)
	}
	waitStat(t, h, "envoyhost.plugin_configs_destroyed", func(v int64) bool { return v == swaps })
}

// An LDS update replaces the listener's filter chain: its open
// connections drain (connection: close on the next response), counted.
func TestListenerUpdateDrainsItsConnections(t *testing.T) {
	t.Parallel()
	b := startBackend(t, "b")
	a := startADS(t)
	inline := func(cfg string) resources {
		return resources{}.
			add(resource.ListenerType, listener(t, "l", "r", nil, golangInline(t, probeConfig(t, cfg)))).
			add(resource.RouteType, routeConfig("r", prefixRoute("all", "/", "b"))).
			add(resource.ClusterType, staticCluster(t, "b", b.Addr))
	}
	setADS(t, a, "1", inline("v1"))
	h := startProbeHost(t, a)
	c := &http.Client{Transport: &http.Transport{}}
	if resp, cfg, _ := probeGet(t, c, h, nil); cfg != "v1" || resp.Close {
		t.Fatalf("config %q close %v", cfg, resp.Close)
	}
	setADS(t, a, "2", inline("v2"))
	awaitAccepted(t, h, "2", resource.ListenerType)
	waitStat(t, h, "listener.l.downstream_cx_drained", func(v int64) bool { return v == 1 })
	// the open connection still runs the old chain, and closes after its
	// next response; a new connection gets the new chain
	if resp, cfg, _ := probeGet(t, c, h, nil); cfg != "v1" || !resp.Close {
		t.Fatalf("on the drained connection: config %q close %v, want v1 and connection: close", cfg, resp.Close)
	}
	if resp, cfg, _ := probeGet(t, c, h, nil); cfg != "v2" || resp.Close {
		t.Fatalf("on a new connection: config %q close %v, want v2", cfg, resp.Close)
	}
	// Envoy's own count of the connection: close a drain sent
	if n := stat(t, h, "http.l.downstream_cx_drain_close"); n != 1 {
		t.Errorf("http.l.downstream_cx_drain_close = %d, want 1", n)
	}
}

// Pool state survives a filter config swap: Envoy creates the new config
// before it destroys the old one (the host does too), so a pool both name
// keeps its endpoints, their metrics and counters. With the servers'
// /metrics gone after the first scrapes, picks after the swap still have
// fresh metrics (staleness 30 s): none falls back to fail-open.
func TestPoolsSurviveAFilterConfigSwap(t *testing.T) {
	t.Parallel()
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	cfg := inflowConfig(0, b1, b2)
	cfg["pools"].([]any)[0].(map[string]any)["scheduler"] = map[string]any{"staleness": "30s"}
	h, path := startInflow(t, cpConfig(cfg), harness.XDSHostOptions{})
	stale := protocol.PoolStat("p1", protocol.PoolStatStaleEndpoints)
	waitStat(t, h, stale, func(v int64) bool { return v == 0 })
	b1.MetricsDown.Store(true)
	b2.MetricsDown.Store(true)

	cfg["models"] = append(cfg["models"].([]any), map[string]any{"name": "other", "pool": "p1"})
	writeConfig(t, path, cpConfig(cfg))
	awaitAccepted(t, h, "2", resource.ExtensionConfigType)
	if n := stat(t, h, "envoyhost.plugin_configs_destroyed"); n < 1 {
		t.Fatalf("the old filter config was not destroyed (%d): no swap happened", n)
	}
	c := client(h)
	for range 6 {
		if _, err := c.Chat.Completions.New(testContext(t), chatParams("other", "hi")); err != nil {
			t.Fatal(err)
		}
	}
	picks := func() int64 {
		return statOr0(t, h, protocol.EndpointStat("p1", b1.Addr, protocol.EndpointStatPicks)) +
			statOr0(t, h, protocol.EndpointStat("p1", b2.Addr, protocol.EndpointStatPicks))
	}
	poll.Eventually(t, "the picks exported", func() bool { return picks() >= 6 })
	if n := statOr0(t, h, protocol.PoolStat("p1", protocol.PoolStatFailOpens)); n != 0 {
		t.Errorf("%d picks after the swap failed open: the pool lost its metrics", n)
	}
	if n := stat(t, h, stale); n != 0 {
		t.Errorf("%d endpoints stale after the swap", n)
	}
}
