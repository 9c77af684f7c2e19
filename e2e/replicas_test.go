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
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Serve(ctx, lis, nil) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

// replicaHosts are n Envoy replicas of one pool of sims, fed by one
// control plane, sharing state through relayAddr. Each host is its own
// process, with its own filter state, as separate Envoy pods have.
func replicaHosts(t *testing.T, sims *sim.Cluster, relayAddr string, n int) []*harness.Host {
	t.Helper()
	path := filepath.Join(t.TempDir(), "inflow.yaml")
	writeConfig(t, path, cpConfig(map[string]any{
		"models": []map[string]any{{"name": "llama", "pool": "sims"}},
		"pools": []map[string]any{{"name": "sims", "endpoints": sims.Addrs(),
			"scheduler": map[string]any{"scrape_interval": "20ms", "staleness": "1s"}}},
		"shared_state": map[string]any{"relay": relayAddr},
	}))
	cp := startControlPlane(t, path)
	hosts := make([]*harness.Host, n)
	for i := range hosts {
		hosts[i] = startXDSHost(t, cp, harness.XDSHostOptions{})
	}
	return hosts
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
