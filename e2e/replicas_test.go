package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/inflow-gateway/inflow/controlplane/relay"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// startRelay serves the control plane's state relay on a loopback port
// until the returned stop is called (or the test ends).
func startRelay(t *testing.T) (addr string, stop func()) {
	addrs, stops := startRelays(t, 1)
	return addrs[0], stops[0]
}

// startRelays serves n relays, as n control-plane replicas would, each
// linked with every relay's address (its own among them, as a headless
// Service lists every pod) when there are several.
func startRelays(t *testing.T, n int) (addrs []string, stops []func()) {
	t.Helper()
	var lis []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis, addrs = append(lis, l), append(addrs, l.Addr().String())
	}
	for _, l := range lis {
		ctx, cancel := context.WithCancel(context.Background())
		h := relay.New(nil)
		done := make(chan error, 2)
		go func() { done <- relay.Serve(ctx, l, h) }()
		tasks := 1
		if n > 1 {
			tasks++
			go func() { done <- h.Peer(ctx, addrs) }()
		}
		stopped := false
		stop := func() {
			if !stopped {
				stopped = true
				cancel()
				for range tasks {
					if err := <-done; err != nil {
						t.Error(err)
					}
				}
			}
		}
		t.Cleanup(stop)
		stops = append(stops, stop)
	}
	return addrs, stops
}

// replicaHosts are n Envoy replicas of one pool of sims, fed by one
// control plane, sharing state through relayAddr. Each host is its own
// process, with its own filter state, as separate Envoy pods have.
func replicaHosts(t *testing.T, sims *sim.Cluster, relayAddr string, n int) []*harness.Host {
	t.Helper()
	cp := replicasControlPlane(t, sims, relayAddr)
	hosts := make([]*harness.Host, n)
	for i := range hosts {
		hosts[i] = startXDSHost(t, cp, harness.XDSHostOptions{})
	}
	return hosts
}

// replicasControlPlane is a control plane serving one pool of sims whose
// filter config names relayAddr.
func replicasControlPlane(t *testing.T, sims *sim.Cluster, relayAddr string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "inflow.yaml")
	writeConfig(t, path, cpConfig(map[string]any{
		"models": []map[string]any{{"name": "llama", "pool": "sims"}},
		"pools": []map[string]any{{"name": "sims", "endpoints": sims.Addrs(),
			"scheduler": map[string]any{"scrape_interval": "20ms", "staleness": "1s"}}},
		"shared_state": map[string]any{"relay": relayAddr},
	}))
	return startControlPlane(t, path)
}

func poolStatIs(t *testing.T, h *harness.Host, stat string, cond func(int64) bool) func() bool {
	return statIs(t, h, protocol.PoolStat("sims", stat), cond)
}

// conversationTurns is the chat of conversation i after n user turns; each
// conversation has a system prompt of its own, so only the simulator that
// served its earlier turns has any of it cached.
func conversationTurns(i, n int) []openai.ChatCompletionMessageParamUnion {
	msgs := []openai.ChatCompletionMessageParamUnion{
		openai.SystemMessage(fmt.Sprintf("You are assistant number %d. %s", i, strings.Repeat("Answer briefly and politely. ", 40))),
	}
	for k := range n {
		if k > 0 {
			msgs = append(msgs, openai.AssistantMessage("an answer"))
		}
		msgs = append(msgs, openai.UserMessage(fmt.Sprintf("question %d of conversation %d", k, i)))
	}
	return msgs
}

// TestTwoReplicasShareStateThroughTheRelay: two hosts in front of the same
// simulators, fed by one control plane, a load balancer alternating
// between them per request. Each
// conversation's second turn reaches the host that did not place the
// first, and still lands where the first turn's prompt is cached (the
// usage the client gets says so); one replica's scrapes serve the other.
// When the relay goes, both keep serving, each on its own.
func TestTwoReplicasShareStateThroughTheRelay(t *testing.T) {
	sims := startSims(t, 4)
	relayAddr, stopRelay := startRelay(t)
	hosts := replicaHosts(t, sims, relayAddr, 2)
	ctx, clients := continueWhereCached(t, hosts)

	stopRelay()
	for i, h := range hosts {
		poll.Eventually(t, "relay disconnected", poolStatIs(t, h, protocol.PoolStatSharedConnected, func(v int64) bool { return v == 0 }))
		if _, err := clients[i].Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "llama", Messages: conversationTurns(100, 1)}); err != nil {
			t.Errorf("a replica without its relay must go on serving: %v", err)
		}
	}
	// With nothing arriving from the relay each replica scrapes every
	// simulator itself: no more scrapes are skipped (one per simulator and
	// replica may still be counted in the export after the disconnect).
	skipped := func() int64 {
		var n int64
		for _, h := range hosts {
			v, _ := optionalStat(t, h, protocol.PoolStat("sims", protocol.PoolStatScrapesSkipped))
			n += v
		}
		return n
	}
	scrapes := func() uint64 {
		var n uint64
		for _, s := range sims.Servers {
			n += s.Stats().Scrapes
		}
		return n
	}
	was, before := skipped(), scrapes()
	// 400 scrapes: two seconds of both replicas scraping 4 simulators every
	// 20 ms, so the stats export (every second) has caught up.
	poll.Eventually(t, "both replicas scrape every simulator themselves", func() bool { return scrapes() >= before+400 })
	if d := skipped() - was; d > 2*4 {
		t.Errorf("%d scrapes skipped after the relay went", d)
	}
}

// continueWhereCached starts conversations through hosts[0] and sends each
// one's second turn through hosts[1], which must send it where the first
// turn's prompt is cached (the usage the client gets says so); and each
// host's scrapes must serve the other. It returns the clients of the
// hosts, and their context.
func continueWhereCached(t *testing.T, hosts []*harness.Host) (context.Context, []openai.Client) {
	t.Helper()
	for _, h := range hosts {
		poll.Eventually(t, "fresh metrics", poolStatIs(t, h, protocol.PoolStatStaleEndpoints, func(v int64) bool { return v == 0 }))
		poll.Eventually(t, "relay connected", poolStatIs(t, h, protocol.PoolStatSharedConnected, func(v int64) bool { return v == 1 }))
	}
	ctx := testContext(t)
	clients := []openai.Client{client(hosts[0]), client(hosts[1])}
	const conversations = 6
	for i := range conversations {
		first, err := clients[0].Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "llama", Messages: conversationTurns(i, 1)})
		if err != nil {
			t.Fatal(err)
		}
		// The placement crosses the relay in the background; a request
		// that overtakes it would be picked alone. Wait for host 1 to
		// have received as many placements as host 0 made.
		poll.Eventually(t, "the placement reaches the other replica", func() bool {
			sent, _ := optionalStat(t, hosts[0], protocol.PoolStat("sims", protocol.PoolStatSharedPlacementsSent))
			got, _ := optionalStat(t, hosts[1], protocol.PoolStat("sims", protocol.PoolStatSharedPlacementsReceived))
			return sent >= int64(i+1) && got >= sent
		})
		second, err := clients[1].Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "llama", Messages: conversationTurns(i, 2)})
		if err != nil {
			t.Fatal(err)
		}
		cached := second.Usage.PromptTokensDetails.CachedTokens
		// The simulator caches whole 16-token blocks of the first turn's
		// prompt (vLLM's block size).
		if want := first.Usage.PromptTokens / 16 * 16; cached < want-16 {
			t.Errorf("conversation %d: turn 2 found %d tokens cached, turn 1 had %d prompt tokens: it went elsewhere", i, cached, first.Usage.PromptTokens)
		}
	}
	poll.Eventually(t, "scrapes of one replica serve the other", func() bool {
		return poolStatIs(t, hosts[0], protocol.PoolStatScrapesSkipped, func(v int64) bool { return v > 0 })() &&
			poolStatIs(t, hosts[1], protocol.PoolStatScrapesSkipped, func(v int64) bool { return v > 0 })()
	})
	return ctx, clients
}

// TestReplicasOnTwoControlPlanesShareThroughPeeredRelays: in Kubernetes the
// control plane runs several replicas behind one Service, and each Envoy's
// relay stream lands on one of them. Two control planes, each with its
// relay linked to the other's (--relay-peers), each feeding one host: a
// conversation continued through the other host still finds its prompt
// cached, and one host's scrapes serve the other. When the peer link goes
// (the other control plane's relay stops), the host left on the surviving
// relay goes on serving, alone.
func TestReplicasOnTwoControlPlanesShareThroughPeeredRelays(t *testing.T) {
	sims := startSims(t, 4)
	relays, stops := startRelays(t, 2)
	hosts := []*harness.Host{
		startXDSHost(t, replicasControlPlane(t, sims, relays[0]), harness.XDSHostOptions{}),
		startXDSHost(t, replicasControlPlane(t, sims, relays[1]), harness.XDSHostOptions{}),
	}
	ctx, clients := continueWhereCached(t, hosts)

	stops[1]()
	poll.Eventually(t, "host 1 lost its relay", poolStatIs(t, hosts[1], protocol.PoolStatSharedConnected, func(v int64) bool { return v == 0 }))
	for i := range hosts {
		if _, err := clients[i].Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "llama", Messages: conversationTurns(200+i, 1)}); err != nil {
			t.Errorf("host %d must go on serving without its peer: %v", i, err)
		}
	}
}
