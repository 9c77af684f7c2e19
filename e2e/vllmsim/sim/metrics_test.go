package sim

import (
	"bytes"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/inflow-gateway/inflow/internal/poll"
)

func parseMetrics(t *testing.T, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, text)
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// gauge returns the single sample of a gauge family.
func gauge(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok || len(f.GetMetric()) != 1 {
		t.Fatalf("%s: missing or not a single series", name)
	}
	return f.GetMetric()[0].GetGauge().GetValue()
}

// newestLoRA returns the labels of the newest vllm:lora_requests_info series, the way
// a scheduler must read it.
func newestLoRA(t *testing.T, fams map[string]*dto.MetricFamily) (map[string]string, float64) {
	t.Helper()
	f, ok := fams["vllm:lora_requests_info"]
	if !ok {
		t.Fatal("vllm:lora_requests_info missing")
	}
	var best *dto.Metric
	for _, m := range f.GetMetric() {
		if best == nil || m.GetGauge().GetValue() > best.GetGauge().GetValue() {
			best = m
		}
	}
	return labelsOf(best), best.GetGauge().GetValue()
}

func TestMetricsExposition(t *testing.T) {
	o := fastOptions()
	o.LoRAs, o.MaxLoRAs, o.KVBlocks, o.BlockSize = []string{"a", "b"}, 1, 50, 4
	o = o.withDefaults()
	e := newEngine(o)
	r := &metricsRenderer{opts: o}

	lreq := func(name string) seqRequest {
		q := textReq(strings.Repeat(name, 40), 3)
		q.lora, q.seed = name, name+"\x00"
		return q
	}
	a := mustAdmit(t, e, lreq("a"))
	go func() { _, _ = e.admit(testCtx(t), lreq("b")) }() // waits for the single LoRA slot
	poll.Eventually(t, "b waiting", func() bool { return e.snapshot().waiting == 1 })

	fams := parseMetrics(t, r.render(e.snapshot(), time.Now()))
	wantTypes := map[string]dto.MetricType{
		"vllm:num_requests_running":        dto.MetricType_GAUGE,
		"vllm:num_requests_waiting":        dto.MetricType_GAUGE,
		"vllm:kv_cache_usage_perc":         dto.MetricType_GAUGE,
		"vllm:gpu_cache_usage_perc":        dto.MetricType_GAUGE,
		"vllm:lora_requests_info":          dto.MetricType_GAUGE,
		"vllm:cache_config_info":           dto.MetricType_GAUGE,
		"vllm:prefix_cache_hits_total":     dto.MetricType_COUNTER,
		"vllm:prefix_cache_queries_total":  dto.MetricType_COUNTER,
		"vllm:request_success_total":       dto.MetricType_COUNTER,
		"vllm:time_to_first_token_seconds": dto.MetricType_HISTOGRAM,
		"vllm:e2e_request_latency_seconds": dto.MetricType_HISTOGRAM,
	}
	for name, typ := range wantTypes {
		t.Run(name, func(t *testing.T) {
			f, ok := fams[name]
			if !ok {
				t.Fatal("family missing")
			}
			if f.GetType() != typ {
				t.Errorf("type %v, want %v", f.GetType(), typ)
			}
			for _, m := range f.GetMetric() {
				if got := labelsOf(m)["model_name"]; got != "m" {
					t.Errorf("model_name = %q, want m", got)
				}
			}
		})
	}

	if got := gauge(t, fams, "vllm:num_requests_running"); got != 1 {
		t.Errorf("running = %v, want 1", got)
	}
	if got := gauge(t, fams, "vllm:num_requests_waiting"); got != 1 {
		t.Errorf("waiting = %v, want 1", got)
	}
	// a holds 40 bytes = 10 tokens -> 3 blocks of 4 (2 hashed, 1 partial) of 50.
	if got := gauge(t, fams, "vllm:kv_cache_usage_perc"); math.Abs(got-3.0/50) > 1e-9 {
		t.Errorf("kv usage = %v, want %v", got, 3.0/50)
	}
	info := labelsOf(fams["vllm:cache_config_info"].GetMetric()[0])
	if info["block_size"] != "4" || info["num_gpu_blocks"] != "50" || gauge(t, fams, "vllm:cache_config_info") != 1 {
		t.Errorf("cache_config_info = %v value %v", info, gauge(t, fams, "vllm:cache_config_info"))
	}
	lora, ts := newestLoRA(t, fams)
	if lora["running_lora_adapters"] != "a" || lora["waiting_lora_adapters"] != "b" || lora["max_lora"] != "1" {
		t.Errorf("lora_requests_info labels = %v", lora)
	}
	if now := float64(time.Now().Unix()); ts < now-60 || ts > now+60 {
		t.Errorf("lora_requests_info value %v is not the current unix time", ts)
	}

	run(t, a) // b gets the slot
	poll.Eventually(t, "b running", func() bool { return e.snapshot().running == 1 && e.snapshot().waiting == 0 })
	fams = parseMetrics(t, r.render(e.snapshot(), time.Now().Add(time.Second)))
	if n := len(fams["vllm:lora_requests_info"].GetMetric()); n != 2 {
		t.Errorf("lora_requests_info series = %d, want the old and the new one", n)
	}
	if lora, _ := newestLoRA(t, fams); lora["running_lora_adapters"] != "b" || lora["waiting_lora_adapters"] != "" {
		t.Errorf("newest lora_requests_info = %v, want b running, none waiting", lora)
	}
	ttft := fams["vllm:time_to_first_token_seconds"].GetMetric()[0].GetHistogram()
	if ttft.GetSampleCount() != 1 || ttft.GetSampleSum() <= 0 {
		t.Errorf("ttft histogram count=%d sum=%v, want one positive sample", ttft.GetSampleCount(), ttft.GetSampleSum())
	}
	var success float64
	for _, m := range fams["vllm:request_success_total"].GetMetric() {
		if labelsOf(m)["finished_reason"] == finishLength {
			success = m.GetCounter().GetValue()
		}
	}
	if success != 1 {
		t.Errorf("request_success_total{finished_reason=length} = %v, want 1", success)
	}
}

func TestMetricsOverride(t *testing.T) {
	o := fastOptions().withDefaults() // no adapters: lora info appears only when overridden
	e := newEngine(o)
	r := &metricsRenderer{opts: o}
	if _, ok := parseMetrics(t, r.render(e.snapshot(), time.Now()))["vllm:lora_requests_info"]; ok {
		t.Error("lora_requests_info exported without adapters")
	}
	waiting, kv, maxLoRA := 7, 0.85, 3
	running := []string{"x", "y"}
	r.setOverride(MetricsOverride{NumRequestsWaiting: &waiting, KVCacheUsagePerc: &kv, RunningLoRAAdapters: &running, MaxLoRA: &maxLoRA})
	fams := parseMetrics(t, r.render(e.snapshot(), time.Now()))
	if got := gauge(t, fams, "vllm:num_requests_waiting"); got != 7 {
		t.Errorf("waiting = %v, want override 7", got)
	}
	if got := gauge(t, fams, "vllm:kv_cache_usage_perc"); got != 0.85 {
		t.Errorf("kv = %v, want override 0.85", got)
	}
	if got := gauge(t, fams, "vllm:num_requests_running"); got != 0 {
		t.Errorf("running = %v, want the engine's 0 (not overridden)", got)
	}
	if lora, _ := newestLoRA(t, fams); lora["running_lora_adapters"] != "x,y" || lora["max_lora"] != "3" {
		t.Errorf("lora labels = %v", lora)
	}
	r.setOverride(MetricsOverride{})
	if got := gauge(t, parseMetrics(t, r.render(e.snapshot(), time.Now())), "vllm:kv_cache_usage_perc"); got != 0 {
		t.Errorf("kv after clearing = %v, want 0", got)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	s := startServer(t, fastOptions())
	resp := send(t, http.MethodGet, s.URL()+"/metrics", "")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q", ct)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if fams := parseMetrics(t, buf.Bytes()); len(fams) < 10 {
		t.Errorf("only %d metric families", len(fams))
	}
}

func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{0, "0.0"}, {1, "1.0"}, {0.25, "0.25"}, {math.Inf(1), "+Inf"}, {1.7e9 + 0.5, "1.7000000005e+09"}} {
		if got := formatValue(tc.v); got != tc.want {
			t.Errorf("formatValue(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
