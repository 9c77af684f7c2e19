package pool

import (
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/filter/sharing"
	"github.com/inflow-gateway/inflow/internal/poll"
)

func TestOutboxKeepsOrderAndBound(t *testing.T) {
	var o outbox
	ep := &Endpoint{Addr: "10.0.0.1:8000"}
	a := chain(1, 10)
	if !o.push(ep, a, 4) || !o.push(ep, a, 0) || !o.push(ep, a, 10) || !o.push(ep, a, 99) {
		t.Fatal("push refused below the bound")
	}
	got := o.take(nil)
	if len(got) != 4 || o.queued.Load() != 0 {
		t.Fatalf("took %d, %d still queued", len(got), o.queued.Load())
	}
	want := []struct {
		depth  int
		parent uint64
		hashes []uint64
	}{{4, a[3], a[4:]}, {0, 0, a}, {10, a[9], nil}, {10, a[9], nil}}
	for i, w := range want {
		p := got[i]
		if p.ep != ep || p.depth != w.depth || p.parent != w.parent || !slices.Equal(p.hashes, w.hashes) {
			t.Errorf("placement %d: depth %d parent %x hashes %v, want %+v", i, p.depth, p.parent, p.hashes, w)
		}
		recycle(p)
	}
	for range maxQueuedPlacements {
		o.push(ep, a, 0)
	}
	if o.push(ep, a, 0) {
		t.Error("a push beyond the bound was queued")
	}
	o.discard()
	if o.queued.Load() != 0 || o.head.Load() != nil {
		t.Error("discard left placements queued")
	}
}

// With no relay connection a placement costs one atomic load and queues
// nothing: the replica works alone.
func TestPlacedQueuesNothingWithoutARelay(t *testing.T) {
	s := newSharing()
	s.Placed(&Endpoint{Addr: "a:1"}, chain(1, 5), 0)
	if s.out.queued.Load() != 0 || s.PlacementsDropped.Load() != 0 {
		t.Errorf("queued %d without a connection", s.out.queued.Load())
	}
	var none *Sharing
	none.Placed(&Endpoint{Addr: "a:1"}, chain(1, 5), 0) // a scheduler without a pool link
}

func TestRecordAfterExtendsAKnownChain(t *testing.T) {
	ix := newIndex(100, 2)
	a := chain(1, 10)
	ix.Record(0, a[:6], nil)
	var pm PrefixMatch
	var scratch []uint64
	tests := []struct {
		name   string
		slot   int
		depth  int
		parent uint64
		suffix []uint64
		ok     bool
	}{
		{"unknown slot", 7, 6, a[5], a[6:], false},
		{"parent not held", 1, 6, a[5], a[6:], false},
		{"parent held at another depth", 0, 5, a[5], a[6:], false},
		{"parent held", 0, 6, a[5], a[6:], true},
		{"a refresh: nothing new", 0, 10, a[9], nil, true},
		{"a whole chain", 1, 0, 0, a[:3], true},
		{"nothing at all", 1, 0, 0, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ok := ix.RecordAfter(tt.slot, tt.depth, tt.parent, tt.suffix, &pm, &scratch); ok != tt.ok {
				t.Errorf("RecordAfter = %v, want %v", ok, tt.ok)
			}
		})
	}
	m, _ := match(ix, a)
	if m.Counts[0] != 10 || m.Counts[1] != 3 {
		t.Errorf("leading blocks %v, want [10 3]", m.Counts)
	}
}

// A replica that learns placements only through RecordAfter (what the
// sender believed the endpoint held, then the rest) ends up with the same
// index as the replica that recorded them whole, including LRU order:
// random histories with shared prefixes and evictions.
func TestRecordAfterMatchesRecord(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const slots = 4
	sender, receiver := newIndex(60, slots), newIndex(60, slots)
	var prompts [][]uint64
	var pm, spm PrefixMatch
	var scratch []uint64
	unmatched := 0
	for i := range 2000 {
		var p []uint64
		if len(prompts) > 0 && r.IntN(4) > 0 {
			old := prompts[r.IntN(len(prompts))]
			p = append(p, old[:r.IntN(len(old)+1)]...)
		}
		for range 1 + r.IntN(8) {
			p = append(p, r.Uint64())
		}
		prompts = append(prompts, p)
		slot := r.IntN(slots)
		sender.Match(p, &spm)
		held := int(spm.Counts[slot])
		sender.Record(slot, p, &spm)
		parent := uint64(0)
		if held > 0 {
			parent = p[held-1]
		}
		if !receiver.RecordAfter(slot, held, parent, p[held:], &pm, &scratch) {
			unmatched++
		}
		probe := prompts[r.IntN(len(prompts))]
		got, _ := match(receiver, probe)
		want, _ := match(sender, probe)
		if !slices.Equal(got.Counts, want.Counts) {
			t.Fatalf("step %d: receiver matches %v, sender %v", i, got.Counts, want.Counts)
		}
	}
	if unmatched > 0 {
		t.Errorf("%d placements found no parent though both indexes saw the same history", unmatched)
	}
}

func TestSharedSnapshotsNeverReplaceNewerNumbers(t *testing.T) {
	ep := &Endpoint{Addr: "a:1"}
	now := time.Now()
	snap := sharing.Snapshot{Addr: "a:1", Age: 10 * time.Millisecond, Waiting: 4, KVCacheUsage: 0.5, HasLoRA: true, RunningLoRA: []string{"x"}, MaxLoRA: 2, BlockSize: 16}
	if !ep.applyShared(&snap, now) {
		t.Fatal("first snapshot refused")
	}
	m := ep.Metrics()
	if m.Waiting != 4 || m.KVCacheUsage != 0.5 || !m.HasLoRA || m.MaxLoRA != 2 || m.BlockSize != 16 ||
		!m.ScrapedAt.Equal(now.Add(-10*time.Millisecond)) || !m.LastScrape.Equal(m.ScrapedAt) {
		t.Errorf("metrics %+v", m)
	}
	older := snap
	older.Age, older.Waiting = 20*time.Millisecond, 9
	if ep.applyShared(&older, now) || ep.Metrics().Waiting != 4 {
		t.Error("an older snapshot replaced a newer one")
	}
	ep.ApplyLoadReport(LoadReport{Waiting: 1, HasWaiting: true}, now)
	if ep.applyShared(&snap, now) || ep.Metrics().Waiting != 1 {
		t.Error("a snapshot older than the load report replaced it")
	}
	if lr := ep.Metrics(); !lr.LastScrape.Equal(now.Add(-10 * time.Millisecond)) {
		t.Errorf("a load report moved LastScrape to %v", lr.LastScrape)
	}
}

// A replica that receives other replicas' scrapes of a server does not
// scrape it; when they stop coming (the relay or the other replicas went
// away) it scrapes it again by itself.
func TestPeerScrapesReplaceOwnAndStoppingThemRestoresOwn(t *testing.T) {
	srv := newMetricsServer(t, readTestdata(t, "vllm.txt"))
	m := NewManager()
	defer m.Close()
	opts := fastScrape()
	// A peer's scrape suppresses an own one for about 85 ms: room for a
	// loaded machine to delay the peer's 5 ms ticks.
	opts.Interval = 100 * time.Millisecond
	l := m.Retain("gpu", []string{srv.addr()}, opts, 0)
	defer l.Release()
	ep := l.Pool().Endpoints[0]
	poll.Eventually(t, "first own scrape", func() bool { return ep.Metrics() != nil })

	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() { // a peer scraping the server every 5 ms, delivered at once
		defer close(fed)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				ep.applyShared(&sharing.Snapshot{Addr: srv.addr(), Waiting: 1}, time.Now())
			}
		}
	}()
	poll.Eventually(t, "own scrapes skipped", func() bool { return l.Counters().ScrapesSkipped.Load() >= 2 })
	before := srv.hits.Load()
	skipped := l.Counters().ScrapesSkipped.Load()
	poll.Eventually(t, "more skipped scrapes", func() bool { return l.Counters().ScrapesSkipped.Load() >= skipped+3 })
	if own := srv.hits.Load() - before; own > 1 { // one may have been on its way
		t.Errorf("the replica scraped %d times while its peer's scrapes arrived", own)
	}
	close(stop)
	<-fed
	before = srv.hits.Load()
	poll.Eventually(t, "own scrapes again", func() bool { return srv.hits.Load() >= before+3 })
	if ep.Metrics().Waiting != 3 { // testdata/vllm.txt, not the peer's 1
		t.Errorf("waiting %v after own scrapes resumed", ep.Metrics().Waiting)
	}
}

// A relay nobody listens on: the pool keeps scraping and picking alone,
// queues nothing, and reports no connection.
func TestUnreachableRelayFallsBackToWorkingAlone(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	srv := newMetricsServer(t, readTestdata(t, "vllm.txt"))
	m := NewManager()
	defer m.Close()
	opts := fastScrape()
	opts.Relay = dead
	l := m.Retain("gpu", []string{srv.addr()}, opts, 0)
	defer l.Release()
	ep := l.Pool().Endpoints[0]
	poll.Eventually(t, "own scrapes", func() bool { return srv.hits.Load() >= 5 })
	l.Sharing().Placed(ep, chain(1, 4), 0)
	st := l.Stats(time.Now())
	if st.Shared.Connected || l.Sharing().out.queued.Load() != 0 || st.ScrapesSkipped != 0 {
		t.Errorf("stats %+v, queued %d", st, l.Sharing().out.queued.Load())
	}
}

// BenchmarkPlaced is what sharing adds to a pick: queueing its placement
// (a 4 KiB prompt's 64 blocks, of which the endpoint held 60), from every
// P at once, each goroutine also taking the queue every 256 placements as
// the sender does every 20 ms (its share of the cost is in the number).
func BenchmarkPlaced(b *testing.B) {
	s := newSharing()
	s.out.open.Store(true)
	ep := &Endpoint{Addr: "10.0.0.1:8000"}
	hashes := chain(1, 64)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var taken []*placed
		for i := 0; pb.Next(); i++ {
			s.Placed(ep, hashes, 60)
			if i%256 == 255 {
				taken = s.out.take(taken[:0])
				for _, p := range taken {
					recycle(p)
				}
			}
		}
	})
	if d := s.PlacementsDropped.Load(); d > 0 {
		b.Errorf("%d of %d placements dropped", d, b.N)
	}
}
