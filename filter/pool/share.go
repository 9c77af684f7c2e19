package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/inflow-gateway/inflow/filter/sharing"
)

// Sharing is a pool's link to the state relay (ScrapeOptions.Relay),
// through which the Envoy replicas in front of the same servers share what
// each one alone would not know: where every replica sent which prompt
// (each placement goes into every replica's prefix index) and each
// server's latest scrape (a server scraped by one replica needs no scrape
// by the others). All of it happens off the request path: a pick only
// queues its placement (Placed). When the relay is unreachable, or no
// relay is configured, nothing is queued, every replica scrapes for
// itself and its prefix index holds its own placements: the behaviour of
// a replica alone.
type Sharing struct {
	out   outbox
	snaps chan scraped      // own scrapes waiting to be sent
	wants chan sharing.Want // prefixes to ask the others for
	// Counters of what went through the relay.
	PlacementsSent, PlacementsReceived, PlacementsUnmatched, PlacementsDropped Counter
	SnapshotsSent, SnapshotsReceived                                           Counter
	WantsSent, WantsAnswered                                                   Counter
}

type scraped struct {
	ep *Endpoint
	m  *Metrics
}

func newSharing() *Sharing {
	return &Sharing{snaps: make(chan scraped, 256), wants: make(chan sharing.Want, 256)}
}

// Connected reports whether a relay connection is up.
func (s *Sharing) Connected() bool { return s.out.open.Load() }

// Placed tells the pool's other replicas that ep was sent a prompt made of
// hashes (its prefix chain), of which ep was believed to hold the first
// held. It does nothing unless a relay connection is up; it never blocks,
// takes no lock and, once warm, allocates nothing.
func (s *Sharing) Placed(ep *Endpoint, hashes []uint64, held int) {
	if s == nil || !s.out.open.Load() || len(hashes) == 0 {
		return
	}
	if !s.out.push(ep, hashes, held) {
		s.PlacementsDropped.Add(1)
	}
}

// offer queues an own scrape of ep for the relay, dropping it when the
// queue is full (peers then scrape ep themselves).
func (s *Sharing) offer(ep *Endpoint, m *Metrics) {
	if !s.out.open.Load() {
		return
	}
	select {
	case s.snaps <- scraped{ep, m}:
	default:
	}
}

// Relay timing. Placements wait up to sendInterval to be sent in one
// write: a conversation's next turn comes seconds later, and placements a
// whole second late lost nothing (docs/scheduling.md, "Where the quality
// goes"). Scrapes go at once, since
// a peer that does not see one in time scrapes the server itself.
const (
	sendInterval = 20 * time.Millisecond
	minRedial    = 100 * time.Millisecond
	maxRedial    = 5 * time.Second
	// A connection that lasted this long resets the redial backoff.
	stableConnection = 10 * time.Second
	// A prefix asked for is not asked for again this soon: the answer is
	// on its way, or nobody has it.
	wantAgain = 2 * time.Second
	maxWanted = 4096
)

// relayClient keeps one connection per relay for every pool's stream.
var relayClient = &http.Client{Transport: sharing.NewTransport()}

// shareLoop keeps a stream to relay open until ctx ends, redialling with
// backoff.
func (st *poolState) shareLoop(ctx context.Context, relay string, done chan<- struct{}) {
	defer close(done)
	wait := minRedial
	for {
		began := time.Now()
		_ = st.shareOnce(ctx, relay) // a failed stream is a fallback, not an error: see Sharing
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > stableConnection {
			wait = minRedial
		}
		t := time.NewTimer(jittered(wait, 0.2))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxRedial)
	}
}

// shareOnce runs one stream: this replica's placements and scrapes up,
// the others' down, until either side fails.
func (st *poolState) shareOnce(ctx context.Context, relay string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	up, upWriter := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+relay+sharing.Path+url.PathEscape(st.name), up)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", sharing.ContentType)
	resp, err := relayClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("relay %s: status %d", relay, resp.StatusCode)
	}
	sh := st.share
	sh.out.open.Store(true)
	defer func() {
		sh.out.open.Store(false)
		sh.out.discard()
		for len(sh.snaps) > 0 {
			<-sh.snaps
		}
		for len(sh.wants) > 0 {
			<-sh.wants
		}
	}()
	sent := make(chan error, 1)
	go func() {
		err := st.sendStream(ctx, upWriter)
		upWriter.CloseWithError(err)
		sent <- err
	}()
	err = st.receiveStream(resp.Body)
	cancel()
	return errors.Join(err, <-sent)
}

// sendStream writes the queued placements every sendInterval and each own
// scrape as soon as it is made.
func (st *poolState) sendStream(ctx context.Context, w io.Writer) error {
	sh := st.share
	tick := time.NewTicker(sendInterval)
	defer tick.Stop()
	var (
		buf   []byte
		taken []*placed
		p     sharing.Placement
		s     sharing.Snapshot
	)
	// Wants go with the next batch of placements.
	for {
		buf = buf[:0]
		select {
		case <-ctx.Done():
			return nil
		case sc := <-sh.snaps:
			for more := true; more; {
				snapshotOf(&s, sc.ep, sc.m, time.Now())
				buf = sharing.AppendSnapshot(buf, &s)
				sh.SnapshotsSent.Add(1)
				select {
				case sc = <-sh.snaps:
				default:
					more = false
				}
			}
		case <-tick.C:
			for more := true; more; {
				select {
				case w := <-sh.wants:
					buf = sharing.AppendWant(buf, &w)
					sh.WantsSent.Add(1)
				default:
					more = false
				}
			}
			taken = sh.out.take(taken[:0])
			for i, pl := range taken {
				p = sharing.Placement{Addr: pl.ep.Addr, Depth: pl.depth, Parent: pl.parent, Hashes: pl.hashes}
				buf = sharing.AppendPlacement(buf, &p)
				recycle(pl)
				taken[i] = nil
			}
			sh.PlacementsSent.Add(uint64(len(taken)))
		}
		if len(buf) > 0 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
	}
}

// receiveStream applies the other replicas' frames until the stream ends.
// A placement whose prefix this replica never learnt (it joined later, or
// the relay was down when the prefix was placed) is dropped and the prefix
// asked for; a want this replica can answer is answered with the whole
// chain.
func (st *poolState) receiveStream(body io.Reader) error {
	sh := st.share
	r := sharing.NewReader(body)
	var (
		snap   sharing.Snapshot
		pl     sharing.Placement
		want   sharing.Want
		pm     PrefixMatch
		chain  []uint64
		wanted = make(map[sharing.Want]time.Time)
	)
	for {
		frame, err := r.Next()
		if errors.Is(err, io.EOF) {
			return errors.New("relay closed the stream")
		}
		if err != nil {
			return err
		}
		eps := *st.byAddr.Load()
		switch frame[0] {
		case sharing.TypeSnapshot:
			if err := sharing.DecodeSnapshot(frame, &snap); err != nil {
				return err
			}
			if ep := eps[snap.Addr]; ep != nil && ep.applyShared(&snap, time.Now()) {
				sh.SnapshotsReceived.Add(1)
			}
		case sharing.TypePlacement:
			if err := sharing.DecodePlacement(frame, &pl); err != nil {
				return err
			}
			ep := eps[pl.Addr]
			if ep != nil && st.prefix.RecordAfter(ep.Slot(), pl.Depth, pl.Parent, pl.Hashes, &pm, &chain) {
				sh.PlacementsReceived.Add(1)
				continue
			}
			sh.PlacementsUnmatched.Add(1)
			if ep != nil && pl.Depth > 0 {
				// Ask for the whole chain, which its sender has just
				// recorded, not only the prefix this replica lacks.
				tip := pl.Parent
				if n := len(pl.Hashes); n > 0 {
					tip = pl.Hashes[n-1]
				}
				sh.ask(wanted, sharing.Want{Addr: pl.Addr, Depth: pl.Depth + len(pl.Hashes), Parent: tip}, time.Now())
			}
		case sharing.TypeWant:
			if err := sharing.DecodeWant(frame, &want); err != nil {
				return err
			}
			ep := eps[want.Addr]
			if ep == nil {
				continue
			}
			var ok bool
			if chain, ok = st.prefix.Chain(ep.Slot(), want.Depth, want.Parent, chain[:0]); ok && sh.out.push(ep, chain, 0) {
				sh.WantsAnswered.Add(1)
			}
		}
		// Other frame types come from newer replicas: skipped.
	}
}

// ask queues a want unless the same prefix was asked for recently.
// wanted belongs to the receiving goroutine.
func (s *Sharing) ask(wanted map[sharing.Want]time.Time, w sharing.Want, now time.Time) {
	if at, ok := wanted[w]; ok && now.Sub(at) < wantAgain {
		return
	}
	if len(wanted) >= maxWanted {
		clear(wanted)
	}
	wanted[w] = now
	select {
	case s.wants <- w:
	default:
	}
}

// snapshotOf fills s with ep's scrape m, dated relative to now.
func snapshotOf(s *sharing.Snapshot, ep *Endpoint, m *Metrics, now time.Time) {
	*s = sharing.Snapshot{
		Addr: ep.Addr, Age: now.Sub(m.LastScrape),
		Waiting: m.Waiting, Running: m.Running, KVCacheUsage: m.KVCacheUsage,
		HasLoRA: m.HasLoRA, RunningLoRA: m.RunningLoRA, WaitingLoRA: m.WaitingLoRA,
		MaxLoRA: m.MaxLoRA, BlockSize: m.BlockSize,
	}
}

// applyShared publishes a peer's scrape of e, dated Age before now; it
// reports false when e already has newer numbers (a scrape or a load
// report of its own), which always win.
func (e *Endpoint) applyShared(s *sharing.Snapshot, now time.Time) bool {
	at := now.Add(-s.Age)
	m := &Metrics{
		Waiting: s.Waiting, Running: s.Running, KVCacheUsage: s.KVCacheUsage,
		HasLoRA: s.HasLoRA, RunningLoRA: s.RunningLoRA, WaitingLoRA: s.WaitingLoRA,
		MaxLoRA: s.MaxLoRA, BlockSize: s.BlockSize,
		ScrapedAt: at, LastScrape: at,
	}
	for {
		old := e.metrics.Load()
		if old != nil && !old.ScrapedAt.Before(at) {
			return false
		}
		if e.metrics.CompareAndSwap(old, m) {
			return true
		}
	}
}

// scrapeSkipAge: a scrape younger than this, made by a peer, makes this
// replica's own scrape of the server unnecessary. It is below the shortest
// jittered interval, so a replica's own last scrape never suppresses its
// next one; with R replicas the server is then scraped about once per
// interval whatever R is, by whichever replica wakes first.
func scrapeSkipAge(o *ScrapeOptions) time.Duration {
	return time.Duration(float64(o.Interval) * (1 - o.Jitter) * 0.95)
}
