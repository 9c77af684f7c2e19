package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// BenchmarkConfigEditsUnderLoad: control-plane config edits through the
// xDS-driven host under steady load, one edit per op: a model added or
// removed (every op) and the pool's endpoints changed (every fifth). It
// reports how long each edit takes to show in GET /v1/models (p50, p99),
// and fails if any request failed or any connection was drained.
//
//	go test -run '^$' -bench BenchmarkConfigEditsUnderLoad -benchtime 100x ./e2e/
func BenchmarkConfigEditsUnderLoad(b *testing.B) {
	var backends [3]*harness.Backend
	for i := range backends {
		bk, err := harness.StartBackend(fmt.Sprint("b", i))
		if err != nil {
			b.Fatal(err)
		}
		bk.NoRecord = true
		b.Cleanup(bk.Close)
		backends[i] = bk
	}
	endpoints := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = backends[i].Addr
		}
		return out
	}
	config := func(extra string, pool int) map[string]any {
		models := []any{map[string]any{"name": "llama", "pool": "p1", "rewrite": []any{map[string]any{"model": "llama-3-8b", "weight": 1}}}}
		if extra != "" {
			models = append(models, map[string]any{"name": extra, "pool": "p1"})
		}
		return cpConfig(map[string]any{"models": models, "pools": []any{map[string]any{"name": "p1", "endpoints": endpoints(pool)}}})
	}
	dir := b.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := harness.StartInflowHost(ctx, dir, config("", 2), harness.XDSHostOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	path := filepath.Join(dir, "inflow.yaml")
	c := openai.NewClient(option.WithBaseURL(h.URL("/v1/")), option.WithAPIKey("k"), option.WithMaxRetries(0))

	var sent, failed atomic.Int64
	var firstErr atomic.Value
	load, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for load.Err() == nil {
				_, err := c.Chat.Completions.New(load, chatParams("llama", "hi"))
				if load.Err() != nil {
					return
				}
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	lists := func(name string) (bool, error) {
		page, err := c.Models.List(ctx)
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(page.Data, func(m openai.Model) bool { return m.ID == name }), nil
	}
	took := make([]time.Duration, 0, b.N)
	pool := 2
	b.ResetTimer()
	for i := range b.N {
		extra := ""
		if i%2 == 0 {
			extra = "m" + strconv.Itoa(i)
		}
		if i%5 == 4 {
			pool = 5 - pool // 2 <-> 3 endpoints
		}
		raw, err := json.Marshal(config(extra, pool))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := os.WriteFile(path+".tmp", raw, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			b.Fatal(err)
		}
		want := extra
		if want == "" {
			want = "m" + strconv.Itoa(i-1)
		}
		if err := poll.Until(ctx, poll.DefaultTimeout, "edit visible", func() bool {
			ok, err := lists(want)
			return err == nil && ok == (extra != "")
		}); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	stop()
	wg.Wait()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(sent.Load()), "requests")
	if failed.Load() != 0 {
		b.Errorf("%d of %d requests failed across the edits; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
	stats, err := h.Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"listener.public.downstream_cx_drained", "envoyhost.config_pushes_rejected"} {
		if v := stats[name]; v != "0" {
			b.Errorf("%s = %s, want 0", name, v)
		}
	}
}
