package pool

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func TestParseMetrics(t *testing.T) {
	tests := []struct {
		file  string
		names MetricNames
		want  Metrics
	}{
		{"vllm.txt", VLLM, Metrics{
			Waiting: 3, Running: 12, KVCacheUsage: 0.375, HasLoRA: true,
			RunningLoRA: []string{"sql-lora", "tweet-summary"}, MaxLoRA: 4, BlockSize: 32,
		}},
		{"vllm_old.txt", VLLM, Metrics{Waiting: 4, Running: 3, KVCacheUsage: 0.875, BlockSize: 16}},
		{"sglang.txt", SGLang, Metrics{Waiting: 6, Running: 12, KVCacheUsage: 0.61, BlockSize: 1}},
		{"trtllm.txt", TRTLLM, Metrics{Waiting: 3, Running: 9, KVCacheUsage: 0.42, BlockSize: 32}},
		// The current KV name wins over the older one when both appear; the
		// newest LoRA series wins, the first on a tie; escapes are decoded.
		{"edge.txt", VLLM, Metrics{
			Waiting: 4.5, Running: 12, KVCacheUsage: math.NaN(), HasLoRA: true,
			RunningLoRA: []string{"a", "b"}, WaitingLoRA: []string{"c"}, MaxLoRA: 2,
		}},
		// A server of another kind yields nothing, not an error.
		{"sglang.txt", VLLM, Metrics{}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var got Metrics
			if err := ParseMetrics(readTestdata(t, tt.file), &tt.names, &got); err != nil {
				t.Fatal(err)
			}
			if !metricsEqual(&got, &tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseMetricsErrors(t *testing.T) {
	for _, in := range []string{
		"vllm:num_requests_waiting{engine=\"0\" 3\n",
		"vllm:num_requests_waiting{engine=0} 3\n",
		"vllm:num_requests_waiting three\n",
		"vllm:num_requests_waiting 0x1p3\n",
		"vllm:num_requests_waiting 1_000\n",
		"vllm:num_requests_waiting{engine=\"\\x\"} 1\n",
		"vllm:cache_config_info{block_size=\"big\"} 1\n",
	} {
		var m Metrics
		if err := ParseMetrics([]byte(in), &VLLM, &m); err == nil {
			t.Errorf("ParseMetrics(%q) = nil error, want one", in)
		}
	}
}

// TestParseMatchesExpfmt is the differential test that licenses the fast
// parser: on every sample page and name set it must agree with expfmt.
func TestParseMatchesExpfmt(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		data := readTestdata(t, filepath.Base(f))
		for _, names := range []MetricNames{VLLM, SGLang, TRTLLM} {
			want, err := parseWithExpfmt(data, &names)
			if err != nil {
				t.Fatalf("%s: expfmt: %v", f, err)
			}
			var got Metrics
			if err := ParseMetrics(data, &names, &got); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if !metricsEqual(&got, want) {
				t.Errorf("%s with %v:\nfast   %+v\nexpfmt %+v", f, names.Waiting, got, *want)
			}
		}
	}
}

// FuzzParseMatchesExpfmt: whenever expfmt accepts a page, the fast parser
// must accept it and extract the same numbers.
func FuzzParseMatchesExpfmt(f *testing.F) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed pages in testdata (%v)", err)
	}
	for _, file := range files {
		f.Add(readTestdata(f, filepath.Base(file)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, err := parseWithExpfmt(data, &VLLM)
		if err != nil {
			return
		}
		var got Metrics
		if err := ParseMetrics(data, &VLLM, &got); err != nil {
			t.Fatalf("expfmt accepts, fast parser says %v", err)
		}
		if !metricsEqual(&got, want) {
			t.Fatalf("fast %+v\nexpfmt %+v", got, *want)
		}
	})
}

// parseWithExpfmt is the reference: expfmt's parse, then the extraction
// rules ParseMetrics documents (first-listed name present wins; counts
// summed, KV usage averaged; newest LoRA series, first on a tie; first
// cache-config series).
func parseWithExpfmt(data []byte, names *MetricNames) (*Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	family := func(alts []string) []*dto.Metric {
		for _, n := range alts {
			if f := fams[n]; f != nil && len(f.Metric) > 0 {
				return f.Metric
			}
		}
		return nil
	}
	value := func(m *dto.Metric) float64 {
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
		return m.Untyped.GetValue()
	}
	labelValue := func(m *dto.Metric, name string) string {
		for _, l := range m.Label {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	out := &Metrics{}
	for _, m := range family(names.Waiting) {
		out.Waiting += value(m)
	}
	for _, m := range family(names.Running) {
		out.Running += value(m)
	}
	if kv := family(names.KVCacheUsage); len(kv) > 0 {
		for _, m := range kv {
			out.KVCacheUsage += value(m)
		}
		out.KVCacheUsage /= float64(len(kv))
	}
	if lora := family(names.LoRAInfo); len(lora) > 0 {
		newest := lora[0]
		for _, m := range lora[1:] {
			if value(m) > value(newest) {
				newest = m
			}
		}
		out.HasLoRA = true
		out.RunningLoRA = splitList(labelValue(newest, labelRunningLoRA))
		out.WaitingLoRA = splitList(labelValue(newest, labelWaitingLoRA))
		out.MaxLoRA, _ = strconv.Atoi(labelValue(newest, labelMaxLoRA))
	}
	if cc := family(names.CacheConfig); len(cc) > 0 {
		if names.BlockSizeLabel == "" {
			out.BlockSize = int(value(cc[0]))
		} else if v := labelValue(cc[0], names.BlockSizeLabel); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, err
			}
			out.BlockSize = n
		}
	}
	return out, nil
}

func metricsEqual(a, b *Metrics) bool {
	feq := func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) }
	return feq(a.Waiting, b.Waiting) && feq(a.Running, b.Running) && feq(a.KVCacheUsage, b.KVCacheUsage) &&
		a.HasLoRA == b.HasLoRA && a.MaxLoRA == b.MaxLoRA && a.BlockSize == b.BlockSize &&
		reflect.DeepEqual(a.RunningLoRA, b.RunningLoRA) && reflect.DeepEqual(a.WaitingLoRA, b.WaitingLoRA)
}

// BenchmarkParse compares the fast parser with expfmt on a vLLM page
// padded with the histograms a real one carries.
func BenchmarkParse(b *testing.B) {
	page := readTestdata(b, "vllm.txt")
	var hist strings.Builder
	for i := range 40 { // ~40 histograms x 20 buckets, like vLLM's
		for j := range 20 {
			hist.WriteString("vllm:some_latency_seconds_" + strconv.Itoa(i) + "_bucket{engine=\"0\",le=\"" + strconv.Itoa(j) + ".0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 17.0\n")
		}
	}
	page = append(page, hist.String()...)
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		b.ReportAllocs()
		var m Metrics
		for b.Loop() {
			if err := ParseMetrics(page, &VLLM, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("expfmt", func(b *testing.B) {
		b.SetBytes(int64(len(page)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseWithExpfmt(page, &VLLM); err != nil {
				b.Fatal(err)
			}
		}
	})
}
