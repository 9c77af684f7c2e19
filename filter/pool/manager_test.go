package pool

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/internal/poll"
)

// metricsServer serves testdata/vllm.txt on /metrics, or fails with the
// status in fail when it is non-zero.
type metricsServer struct {
	*httptest.Server
	hits atomic.Int64
	fail atomic.Int64
}

func newMetricsServer(t *testing.T, page []byte) *metricsServer {
	t.Helper()
	s := &metricsServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		if code := s.fail.Load(); code != 0 {
			w.WriteHeader(int(code))
			return
		}
		_, _ = w.Write(page)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *metricsServer) addr() string { return strings.TrimPrefix(s.URL, "http://") }

func fastScrape() ScrapeOptions {
	return ScrapeOptions{Interval: 5 * time.Millisecond, Timeout: time.Second, Staleness: time.Second, Names: VLLM}
}

func TestScrapePublishesMetrics(t *testing.T) {
	srv := newMetricsServer(t, readTestdata(t, "vllm.txt"))
	m := NewManager()
	defer m.Close()
	l := m.Retain("gpu", []string{srv.addr()}, fastScrape(), 0)
	defer l.Release()
	ep := l.Pool().Endpoints[0]
	poll.Eventually(t, "first scrape", func() bool { return ep.Metrics() != nil })
	got := ep.Metrics()
	if got.Waiting != 3 || got.Running != 12 || got.KVCacheUsage != 0.375 || got.BlockSize != 32 || got.MaxLoRA != 4 {
		t.Errorf("metrics %+v", got)
	}
	if !got.Fresh(got.ScrapedAt.Add(time.Second), time.Second) || got.Fresh(got.ScrapedAt.Add(time.Second+1), time.Second) {
		t.Error("Fresh must hold up to the staleness threshold and not after")
	}
	poll.Eventually(t, "scrapes to repeat", func() bool { return ep.Metrics() != got })
}

func TestScrapeErrorsAndStaleness(t *testing.T) {
	srv := newMetricsServer(t, readTestdata(t, "vllm.txt"))
	m := NewManager()
	defer m.Close()
	opts := fastScrape()
	l := m.Retain("gpu", []string{srv.addr()}, opts, 0)
	defer l.Release()
	ep := l.Pool().Endpoints[0]
	poll.Eventually(t, "first scrape", func() bool { return ep.Metrics() != nil })

	srv.fail.Store(http.StatusInternalServerError)
	poll.Eventually(t, "errors counted", func() bool { return ep.ScrapeErrors() >= 2 })
	// The last good scrape happened before the errors just seen, so past
	// the staleness threshold from now the endpoint is stale for certain.
	later := time.Now().Add(opts.Staleness + time.Millisecond)
	st := l.Stats(later)
	if st.StaleEndpoints != 1 || st.Endpoints[0].Fresh {
		t.Errorf("stats %+v: want the endpoint stale", st)
	}
	if st.ScrapeErrors < 2 || st.Endpoints[0].ScrapeErrors < 2 {
		t.Errorf("stats %+v: want scrape errors counted", st)
	}
	if ep.Metrics() == nil {
		t.Error("a failed scrape must keep the old numbers (they age out by staleness)")
	}

	srv.fail.Store(0)
	before := ep.Metrics()
	poll.Eventually(t, "recovery", func() bool { return ep.Metrics() != before })
}

func TestScrapeTimeoutCounted(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // hang until the scraper gives up
		case <-r.Context().Done():
		case <-block:
		}
	}))
	defer srv.Close()
	defer close(block)
	m := NewManager()
	defer m.Close()
	opts := fastScrape()
	opts.Timeout = 20 * time.Millisecond
	l := m.Retain("gpu", []string{strings.TrimPrefix(srv.URL, "http://")}, opts, 0)
	defer l.Release()
	poll.Eventually(t, "timeouts counted", func() bool { return l.Counters().ScrapeErrors.Load() >= 2 })
	if l.Pool().Endpoints[0].Metrics() != nil {
		t.Error("no metrics expected from a server that never answers")
	}
}

func TestScrapeRejectsNonFinite(t *testing.T) {
	srv := newMetricsServer(t, []byte("vllm:num_requests_waiting 1\nvllm:kv_cache_usage_perc NaN\n"))
	m := NewManager()
	defer m.Close()
	l := m.Retain("gpu", []string{srv.addr()}, fastScrape(), 0)
	defer l.Release()
	poll.Eventually(t, "error counted", func() bool { return l.Counters().ScrapeErrors.Load() >= 1 })
	if l.Pool().Endpoints[0].Metrics() != nil {
		t.Error("NaN metrics must not be published")
	}
}

// TestLeasesSurviveConfigUpdate walks a config update the way Envoy does
// it: the new config retains before the old one releases.
func TestLeasesSurviveConfigUpdate(t *testing.T) {
	a, b, c := newMetricsServer(t, readTestdata(t, "vllm.txt")), newMetricsServer(t, readTestdata(t, "vllm.txt")), newMetricsServer(t, readTestdata(t, "vllm.txt"))
	m := NewManager()
	defer m.Close()
	old := m.Retain("gpu", []string{a.addr(), b.addr()}, fastScrape(), 0)
	epB := old.Pool().Endpoints[1]
	poll.Eventually(t, "b scraped", func() bool { return epB.Metrics() != nil })
	epB.Acquire()
	old.Prefix().Record(epB.Slot(), []uint64{1, 2, 3}, nil)

	next := m.Retain("gpu", []string{b.addr(), c.addr()}, fastScrape(), 0)
	if next.Pool().Endpoints[0] != epB || epB.InFlight() != 1 || epB.Metrics() == nil {
		t.Fatal("an endpoint both configs name must keep its in-flight count and metrics")
	}
	if next.Prefix() != old.Prefix() {
		t.Fatal("the pool must keep its prefix index")
	}
	epA := old.Pool().Endpoints[0]
	old.Release()
	old.Release() // idempotent
	if epA.Slot() != -1 {
		t.Error("an endpoint no config names must leave the prefix index")
	}
	var pm PrefixMatch
	if next.Prefix().Match([]uint64{1, 2, 3}, &pm); pm.Counts[epB.Slot()] != 3 {
		t.Errorf("prefix entries of a kept endpoint lost: %v", pm.Counts)
	}
	m.mu.Lock()
	members := len(m.pools["gpu"].members)
	m.mu.Unlock()
	if members != 2 {
		t.Errorf("%d endpoints tracked, want 2 (b and c)", members)
	}
	poll.Eventually(t, "c scraped", func() bool { return next.Pool().Endpoints[1].Metrics() != nil })

	next.Release()
	m.mu.Lock()
	_, alive := m.pools["gpu"]
	m.mu.Unlock()
	if alive {
		t.Error("a pool no config names must be forgotten")
	}
	again := m.Retain("gpu", []string{b.addr()}, fastScrape(), 0)
	defer again.Release()
	if again.Pool().Endpoints[0] == epB {
		t.Error("a pool re-added after a gap starts fresh")
	}
}

func TestRetainDisabledDoesNotScrape(t *testing.T) {
	srv := newMetricsServer(t, readTestdata(t, "vllm.txt"))
	m := NewManager()
	opts := fastScrape()
	opts.Disabled = true
	l := m.Retain("gpu", []string{srv.addr()}, opts, 0)
	l.Release()
	m.Close()
	if srv.hits.Load() != 0 {
		t.Error("disabled scraping sent requests")
	}
}
