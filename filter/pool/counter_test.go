package pool

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/filter/config"
)

// Two exporters (an old and a new config's) taking while events are counted
// must between them hand out every event exactly once.
func TestCounterHandsOutEachIncrementOnce(t *testing.T) {
	const adders, perAdder = 4, 50000
	var c Counter
	var taken atomic.Uint64
	var adding, taking sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		taking.Go(func() {
			for {
				taken.Add(c.TakeUnexported())
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
	for range adders {
		adding.Go(func() {
			for range perAdder {
				c.Add(1)
			}
		})
	}
	adding.Wait()
	close(stop)
	taking.Wait()
	taken.Add(c.TakeUnexported())
	if got := taken.Load(); got != adders*perAdder || c.Load() != adders*perAdder {
		t.Fatalf("exported %d of %d events (counter says %d)", got, adders*perAdder, c.Load())
	}
	if n := c.TakeUnexported(); n != 0 {
		t.Fatalf("%d handed out again", n)
	}
}

// Export hands each increment to one lease of the pool; Stats keeps
// reporting totals.
func TestExportIsSharedByTheLeasesOfAPool(t *testing.T) {
	m := NewManager()
	opts := ScrapeOptions{Disabled: true}
	old := m.Retain("gpu", []string{"10.0.0.1:8000", "10.0.0.2:8000"}, opts, 0)
	defer old.Release()
	next := m.Retain("gpu", []string{"10.0.0.2:8000", "10.0.0.3:8000"}, opts, 0)
	defer next.Release()
	shared := next.Pool().Endpoints[0]
	shared.CountPick()
	shared.CountPick()
	next.Counters().FailOpens.Add(1)

	now := time.Now()
	first := old.Export(now)
	if first.FailOpens != 1 || first.Endpoints[1].Picks != 2 {
		t.Fatalf("first export %+v, want the fail-open and both picks", first)
	}
	second := next.Export(now)
	if second.FailOpens != 0 || second.Endpoints[0].Picks != 0 {
		t.Fatalf("second export %+v handed out increments again", second)
	}
	if st := next.Stats(now); st.FailOpens != 1 || st.Endpoints[0].Picks != 2 || st.StaleEndpoints != 2 {
		t.Fatalf("Stats %+v, want totals and both endpoints stale (never scraped)", st)
	}
}

func TestEveryBuiltinMetricsFormatHasASet(t *testing.T) {
	for _, f := range config.BuiltinMetricsFormats {
		if names, ok := MetricNamesFor(f); !ok || len(names.Waiting) == 0 || len(names.KVCacheUsage) == 0 {
			t.Errorf("format %q: no built-in metric set (%+v)", f, names)
		}
	}
	if _, ok := MetricNamesFor(config.MetricsFormatCustom); ok {
		t.Error("custom has no built-in set")
	}
}

// Zero scrape options take filter/config's defaults, the ones the config
// documents.
func TestScrapeDefaultsComeFromConfig(t *testing.T) {
	o := ScrapeOptions{}.withDefaults()
	if o.Interval != config.DefaultScrapeInterval || o.Timeout != config.DefaultScrapeTimeout ||
		o.Staleness != config.DefaultStaleness || o.Path != config.DefaultMetricsPath || o.Names.Waiting[0] != VLLM.Waiting[0] {
		t.Errorf("defaults %+v", o)
	}
}
