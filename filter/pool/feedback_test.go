package pool

import (
	"math"
	"testing"
	"time"
)

func TestLatencyMovingAverage(t *testing.T) {
	var e Endpoint
	now := time.Unix(1000, 0)
	if _, ok := e.Latency(now); ok {
		t.Fatal("latency before any observation")
	}
	e.ObserveLatency(100*time.Millisecond, 0, false, now)
	l, ok := e.Latency(now.Add(time.Second))
	if !ok || l.TTFT != 0.1 || l.TPOT != 0 || l.Age != time.Second {
		t.Fatalf("first observation: %+v %v", l, ok)
	}
	e.ObserveLatency(600*time.Millisecond, 20*time.Millisecond, true, now)
	l, _ = e.Latency(now)
	if math.Abs(l.TTFT-(0.1+latencyAlpha*0.5)) > 1e-12 || l.TPOT != 0.02 {
		t.Fatalf("second observation: %+v", l)
	}
}

func TestFailureCooldown(t *testing.T) {
	var e Endpoint
	now := time.Unix(1000, 0)
	base, max := time.Second, 5*time.Second
	e.Fail(now, base, max)
	if !e.CoolingDown(now.Add(999*time.Millisecond)) || e.CoolingDown(now.Add(time.Second)) {
		t.Fatal("one failure cools down for base")
	}
	e.Fail(now, base, max)
	e.Fail(now, base, max)
	if !e.CoolingDown(now.Add(3*time.Second)) || e.CoolingDown(now.Add(4*time.Second)) {
		t.Fatal("three failures in a row cool down for 4x base")
	}
	for range 10 {
		e.Fail(now, base, max)
	}
	if e.CoolingDown(now.Add(max)) {
		t.Fatal("the cooldown is capped")
	}
	e.Succeed()
	e.Fail(now.Add(time.Minute), base, max)
	if e.CoolingDown(now.Add(time.Minute + base)) {
		t.Fatal("a success ends the streak")
	}
	// An earlier, shorter cooldown never shortens a longer one.
	e.Fail(now, time.Hour, time.Hour)
	e.Fail(now, time.Second, time.Second)
	if !e.CoolingDown(now.Add(30 * time.Minute)) {
		t.Fatal("the longer cooldown stands")
	}
}

func TestParseLoadReport(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want LoadReport
		ok   bool
	}{
		{"TEXT named_metrics.num_requests_waiting=3.0, named_metrics.kv_cache_usage_perc=0.25", LoadReport{3, 0.25, true, true}, true},
		{`JSON {"named_metrics": {"num_requests_waiting": 2.0, "kv_cache_usage_perc": 1e-05}}`, LoadReport{2, 1e-05, true, true}, true},
		{"text named_metrics.kv_cache_usage_perc=0.5", LoadReport{KVCacheUsage: 0.5, HasKVCacheUsage: true}, true},
		{"TEXT named_metrics.kv_cache_usage_perc=1.5, named_metrics.num_requests_waiting=-1", LoadReport{}, false},
		{"TEXT named_metrics.num_requests_waiting=nan", LoadReport{}, false},
		{"TEXT cpu_utilization=0.3", LoadReport{}, false},
		{"BINARY abc", LoadReport{}, false},
		{`JSON {"named_metrics": `, LoadReport{}, false},
		{"", LoadReport{}, false},
	} {
		got, ok := ParseLoadReport(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %+v %v, want %+v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestApplyLoadReport(t *testing.T) {
	var e Endpoint
	scraped := time.Unix(1000, 0)
	e.SetMetrics(&Metrics{Waiting: 1, Running: 2, KVCacheUsage: 0.1, HasLoRA: true, MaxLoRA: 4, BlockSize: 16, ScrapedAt: scraped})
	at := scraped.Add(300 * time.Millisecond)
	e.ApplyLoadReport(LoadReport{Waiting: 7, HasWaiting: true}, at)
	m := e.Metrics()
	if m.Waiting != 7 || m.KVCacheUsage != 0.1 || m.Running != 2 || m.MaxLoRA != 4 || m.BlockSize != 16 || !m.ScrapedAt.Equal(at) {
		t.Fatalf("after the report: %+v", m)
	}
	if !m.Fresh(at.Add(100*time.Millisecond), 200*time.Millisecond) {
		t.Fatal("a report refreshes the numbers")
	}
	// A report older than the last scrape does not undo it.
	e.SetMetrics(&Metrics{Waiting: 0, ScrapedAt: at.Add(time.Second)})
	e.ApplyLoadReport(LoadReport{Waiting: 9, HasWaiting: true}, at)
	if e.Metrics().Waiting != 0 || e.LoadReports() != 1 {
		t.Fatalf("an old report replaced a newer scrape: %+v", e.Metrics())
	}
	var fresh Endpoint
	fresh.ApplyLoadReport(LoadReport{KVCacheUsage: 0.5, HasKVCacheUsage: true}, at)
	if m := fresh.Metrics(); m == nil || m.KVCacheUsage != 0.5 {
		t.Fatalf("a report before any scrape: %+v", m)
	}
}
