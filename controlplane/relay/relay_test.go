package relay_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/relay"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/scheduler"
	"github.com/inflow-gateway/inflow/filter/sharing"
	"github.com/inflow-gateway/inflow/internal/poll"
)

const page = `vllm:num_requests_waiting{model_name="m"} 0
vllm:num_requests_running{model_name="m"} 0
vllm:kv_cache_usage_perc{model_name="m"} 0.1
`

// servers starts n model servers that serve a fixed, idle /metrics page and
// count the scrapes.
func servers(t *testing.T, n int) (addrs []string, scrapes *atomic.Int64) {
	scrapes = new(atomic.Int64)
	for range n {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			scrapes.Add(1)
			_, _ = io.WriteString(w, page)
		}))
		t.Cleanup(s.Close)
		addrs = append(addrs, strings.TrimPrefix(s.URL, "http://"))
	}
	return addrs, scrapes
}

// startRelay serves a relay on addr ("127.0.0.1:0" for any port) until the
// returned stop is called.
func startRelay(t *testing.T, addr string, obs relay.Observer) (string, *relay.Relay, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := relay.New(obs)
	srv := relay.NewServer(h)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = srv.Close()
			<-done
		}
	}
	t.Cleanup(stop)
	return lis.Addr().String(), h, stop
}

// replica is one Envoy's scheduler state: its own pool Manager (scrapers,
// prefix index, in-flight counts), as in a separate process.
type replica struct {
	mgr   *pool.Manager
	set   *scheduler.Set
	sched *scheduler.Scheduler
}

func newReplica(t *testing.T, addrs []string, relayAddr string) *replica {
	t.Helper()
	c := &config.Config{
		Models:      []config.Model{{Name: "m", Pool: "gpu"}},
		Pools:       []config.Pool{{Name: "gpu", Endpoints: addrs, Scheduler: &config.Scheduler{ScrapeInterval: "20ms"}}},
		SharedState: config.SharedState{Relay: relayAddr},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &replica{mgr: pool.NewManager()}
	r.set = scheduler.Open(r.mgr, c)
	r.sched = r.set.Scheduler("gpu")
	t.Cleanup(func() { r.set.Release(); r.mgr.Close() })
	return r
}

func (r *replica) stats() pool.Stats { return r.sched.Stats(time.Now()) }

func (r *replica) waitReady(t *testing.T, connected bool) {
	t.Helper()
	poll.Eventually(t, fmt.Sprintf("fresh metrics, relay connected %v", connected), func() bool {
		st := r.stats()
		return st.StaleEndpoints == 0 && st.Shared.Connected == connected
	})
}

// conversation is a chat prompt long enough to span several blocks.
func conversation(i, turns int) scheduler.Input {
	var b strings.Builder
	fmt.Fprintf(&b, `[{"role":"system","content":"%s"}`, strings.Repeat("You are a helpful assistant. ", 20))
	for k := range turns {
		fmt.Fprintf(&b, `,{"role":"user","content":"conversation %d question %d %s"}`, i, k, strings.Repeat("tell me more ", 10))
	}
	b.WriteByte(']')
	return scheduler.Input{Model: "m", Prompt: [][]byte{[]byte(b.String())}}
}

func (r *replica) pick(t *testing.T, in scheduler.Input) scheduler.Result {
	t.Helper()
	var out scheduler.Result
	if err := r.sched.Pick(&in, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// heldBy is how many leading blocks of in this replica believes addr holds.
func (r *replica) heldBy(in scheduler.Input, addr string) int {
	var buf []byte
	hashes := scheduler.HashPrompt(nil, &buf, &in, scheduler.DefaultBlockChars, scheduler.DefaultMaxBlocks)
	var pm pool.PrefixMatch
	r.sched.Prefix().Match(hashes, &pm)
	for _, ep := range r.sched.Pool().Endpoints {
		if ep.Addr == addr && ep.Slot() < len(pm.Counts) {
			return int(pm.Counts[ep.Slot()])
		}
	}
	return 0
}

// Two replicas behind a per-request load balancer: the second turn of each
// conversation reaches the replica that did not place the first, and it
// still goes where the first turn's prefix is cached. Each server is
// scraped by whichever replica comes first, and its scrape serves both.
func TestReplicasShareThroughTheRelay(t *testing.T) {
	addrs, _ := servers(t, 4)
	m := &admin.Metrics{}
	relayAddr, _, _ := startRelay(t, "127.0.0.1:0", m)
	a, b := newReplica(t, addrs, relayAddr), newReplica(t, addrs, relayAddr)
	a.waitReady(t, true)
	b.waitReady(t, true)

	shareConversations(t, a, b, 0, 8)
	poll.Eventually(t, "scrapes made by one replica serve the other", func() bool {
		sa, sb := a.stats(), b.stats()
		return sa.ScrapesSkipped > 0 && sb.ScrapesSkipped > 0 && sa.Shared.SnapshotsReceived > 0 && sb.Shared.SnapshotsReceived > 0
	})
	if st := a.stats(); st.Shared.PlacementsSent < 8 || st.Shared.PlacementsUnmatched != 0 {
		t.Errorf("replica a: %+v", st.Shared)
	}
	if st := b.stats(); st.Shared.PlacementsReceived < 8 || st.Shared.PlacementsUnmatched != 0 {
		t.Errorf("replica b: %+v", st.Shared)
	}
	var text bytes.Buffer
	if err := m.WriteText(&text); err != nil || !strings.Contains(text.String(), "inflow_controlplane_relay_streams_active 2") {
		t.Errorf("relay metrics (%v):\n%s", err, text.String())
	}
}

// shareConversations starts n conversations (numbered from first) on a
// and sends each one's second turn to b, which must pick where a placed
// the first turn, the whole first turn cached.
func shareConversations(t *testing.T, a, b *replica, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		first := a.pick(t, conversation(i, 1))
		placed := first.Endpoints[0].Addr
		next := conversation(i, 2)
		poll.Eventually(t, "replica b learns where replica a placed the conversation", func() bool {
			return b.heldBy(next, placed) == first.PromptBlocks
		})
		second := b.pick(t, next)
		if got := second.Endpoints[0].Addr; got != placed || second.PrefixBlocks != first.PromptBlocks {
			t.Errorf("conversation %d: turn 2 went to %s (%d blocks cached), turn 1 to %s (%d blocks)",
				i, got, second.PrefixBlocks, placed, first.PromptBlocks)
		}
	}
}

// A replica that loses the relay works alone, as without one: it queues
// nothing, scrapes every server itself, and its picks use what it placed
// itself. When the relay is back both reconnect and share again.
func TestReplicasFallBackWhenTheRelayGoesAndRejoinWhenItReturns(t *testing.T) {
	addrs, scrapes := servers(t, 3)
	relayAddr, _, stopRelay := startRelay(t, "127.0.0.1:0", nil)
	a, b := newReplica(t, addrs, relayAddr), newReplica(t, addrs, relayAddr)
	a.waitReady(t, true)
	b.waitReady(t, true)

	stopRelay()
	a.waitReady(t, false)
	b.waitReady(t, false)
	sentBefore := a.stats().Shared.PlacementsSent
	a.pick(t, conversation(100, 1))
	second := b.pick(t, conversation(100, 2))
	if second.PrefixBlocks != 0 {
		t.Errorf("replica b believed %d blocks cached with no relay: it can only know its own placements", second.PrefixBlocks)
	}
	if st := a.stats(); st.Shared.PlacementsSent != sentBefore || st.Shared.PlacementsDropped != 0 {
		t.Errorf("replica a queued placements with no relay: %+v", st.Shared)
	}
	skipped := func() uint64 { return a.stats().ScrapesSkipped + b.stats().ScrapesSkipped }
	rounds := func(n int) {
		before := scrapes.Load()
		poll.Eventually(t, "each replica scrapes every server itself", func() bool {
			return scrapes.Load() >= before+int64(2*len(addrs)*n)
		})
	}
	rounds(2) // a scrape that arrived just before the relay went may still count
	was := skipped()
	rounds(3)
	if now := skipped(); now != was {
		t.Errorf("%d scrapes skipped with no relay", now-was)
	}

	startRelay(t, relayAddr, nil) // same address, as a restarted control plane
	a.waitReady(t, true)
	b.waitReady(t, true)
	third := a.pick(t, conversation(200, 1))
	next := conversation(200, 2)
	poll.Eventually(t, "sharing resumes", func() bool {
		return b.heldBy(next, third.Endpoints[0].Addr) == third.PromptBlocks
	})
}

// A replica that joins later (a scale-up) never saw the placements made
// before it: when a later placement extends one of those prefixes it asks
// for the chain, and the replica that placed it answers.
func TestALateReplicaLearnsEarlierPrefixesOnDemand(t *testing.T) {
	addrs, _ := servers(t, 3)
	relayAddr, _, _ := startRelay(t, "127.0.0.1:0", nil)
	a := newReplica(t, addrs, relayAddr)
	a.waitReady(t, true)
	first := a.pick(t, conversation(7, 1)) // before b exists
	poll.Eventually(t, "the first placement sent", func() bool { return a.stats().Shared.PlacementsSent == 1 })
	b := newReplica(t, addrs, relayAddr)
	b.waitReady(t, true)
	second := a.pick(t, conversation(7, 2)) // extends what only a knows
	if second.Endpoints[0] != first.Endpoints[0] || second.PrefixBlocks != first.PromptBlocks {
		t.Fatalf("replica a moved its own conversation: %v then %v", first.Endpoints[0], second.Endpoints[0])
	}
	third := conversation(7, 3)
	poll.Eventually(t, "replica b learns the whole conversation", func() bool {
		return b.heldBy(third, first.Endpoints[0].Addr) == second.PromptBlocks
	})
	if sb, sa := b.stats().Shared, a.stats().Shared; sb.WantsSent == 0 || sa.WantsAnswered == 0 {
		t.Errorf("wants sent by b %d, answered by a %d", sb.WantsSent, sa.WantsAnswered)
	}
}

func TestRelayRefusesWhatIsNotAStream(t *testing.T) {
	h := relay.New(nil)
	tests := []struct {
		name, method, path, ctype string
		proto                     int
		want                      int
	}{
		{"not a channel", http.MethodPost, "/other", sharing.ContentType, 2, http.StatusNotFound},
		{"no pool", http.MethodPost, sharing.Path, sharing.ContentType, 2, http.StatusNotFound},
		{"GET", http.MethodGet, sharing.Path + "gpu", sharing.ContentType, 2, http.StatusMethodNotAllowed},
		{"HTTP/1.1", http.MethodPost, sharing.Path + "gpu", sharing.ContentType, 1, http.StatusHTTPVersionNotSupported},
		{"wrong content type", http.MethodPost, sharing.Path + "gpu", "application/json", 2, http.StatusUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			req.ProtoMajor = tt.proto
			req.Header.Set("Content-Type", tt.ctype)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("status %d, want %d", rec.Code, tt.want)
			}
		})
	}
}

// rawStream is a pool stream driven by hand, to send what no replica would.
type rawStream struct {
	up   *io.PipeWriter
	down io.ReadCloser
}

// openRaw opens a stream on its own connection; window, when not 0, is how
// much the client lets the relay send it before it reads.
func openRaw(t *testing.T, relayAddr, pool string, window ...int) *rawStream {
	t.Helper()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	if len(window) > 0 {
		tr.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: window[0], MaxReceiveBufferPerConnection: window[0]}
	}
	client := &http.Client{Transport: tr}
	t.Cleanup(client.CloseIdleConnections)
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, "http://"+relayAddr+sharing.Path+pool, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", sharing.ContentType)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := &rawStream{up: pw, down: resp.Body}
	t.Cleanup(func() { pw.Close(); resp.Body.Close() })
	return s
}

// Frames reach the pool's other streams, not the sender and not other
// pools; a malformed frame ends its sender's stream only.
func TestRelayForwardsWithinAPoolAndDropsBadStreams(t *testing.T) {
	relayAddr, h, _ := startRelay(t, "127.0.0.1:0", nil)
	a, b, other := openRaw(t, relayAddr, "gpu"), openRaw(t, relayAddr, "gpu"), openRaw(t, relayAddr, "cpu")
	poll.Eventually(t, "three streams", func() bool { return h.Streams("gpu") == 2 && h.Streams("cpu") == 1 })
	pl := sharing.Placement{Addr: "10.0.0.1:8000", Hashes: []uint64{1, 2, 3}}
	if _, err := a.up.Write(sharing.AppendPlacement(nil, &pl)); err != nil {
		t.Fatal(err)
	}
	frame, err := sharing.NewReader(b.down).Next()
	var got sharing.Placement
	if err != nil || sharing.DecodePlacement(frame, &got) != nil || got.Addr != pl.Addr || len(got.Hashes) != 3 {
		t.Fatalf("b got %+v, %v", got, err)
	}
	// A bad frame from b: b's stream ends, a's goes on.
	if _, err := b.up.Write([]byte{3, sharing.TypePlacement, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(b.down); len(rest) != 0 {
		t.Errorf("b got %d more bytes", len(rest))
	}
	poll.Eventually(t, "b's stream closed", func() bool { return h.Streams("gpu") == 1 })
	c := openRaw(t, relayAddr, "gpu")
	poll.Eventually(t, "c joined", func() bool { return h.Streams("gpu") == 2 })
	if _, err := a.up.Write(sharing.AppendPlacement(nil, &pl)); err != nil {
		t.Fatal(err)
	}
	if _, err := sharing.NewReader(c.down).Next(); err != nil {
		t.Fatalf("c: %v", err)
	}
	// Nothing crossed into the other pool: its stream ends empty.
	other.up.Close()
	if rest, err := io.ReadAll(other.down); len(rest) != 0 {
		t.Errorf("pool cpu received %d bytes (%v)", len(rest), err)
	}
}

// counting is a relay.Observer for tests.
type counting struct{ forwarded, dropped atomic.Uint64 }

func (c *counting) RelayStreamOpened() {}
func (c *counting) RelayStreamClosed() {}
func (c *counting) RelayPeerLinks(int) {}
func (c *counting) RelayFrames(forwarded, dropped uint64) {
	c.forwarded.Add(forwarded)
	c.dropped.Add(dropped)
}

// A stream that stops reading loses frames once its 4 MiB are queued; the
// other streams of the pool get every frame and the sender is not slowed.
func TestASlowStreamLosesFramesAndSlowsNobody(t *testing.T) {
	obs := &counting{}
	relayAddr, h, _ := startRelay(t, "127.0.0.1:0", obs)
	sender := openRaw(t, relayAddr, "gpu")
	openRaw(t, relayAddr, "gpu", 64<<10) // never reads
	fast := openRaw(t, relayAddr, "gpu")
	poll.Eventually(t, "three streams", func() bool { return h.Streams("gpu") == 3 })
	big := sharing.Placement{Addr: "10.0.0.1:8000", Hashes: make([]uint64, 3000)}
	frame := sharing.AppendPlacement(nil, &big) // 24 KB
	const n = 400                               // 9.6 MB: more than the slow stream may have queued
	sent := make(chan error, 1)
	go func() {
		for range n {
			if _, err := sender.up.Write(frame); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	r := sharing.NewReader(fast.down)
	for i := range n {
		if _, err := r.Next(); err != nil {
			t.Fatalf("fast stream, frame %d: %v", i, err)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if obs.dropped.Load() == 0 || obs.forwarded.Load() < n {
		t.Errorf("forwarded %d, dropped %d: the slow stream's frames must be dropped, the fast one's not", obs.forwarded.Load(), obs.dropped.Load())
	}
}
