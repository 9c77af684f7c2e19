package genai

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// labels reads a series' labels, e.g. for gen_ai_token_type.
func labels(m *dto.Metric) map[string]string {
	pairs := m.GetLabel()
	out := make(map[string]string, len(pairs))
	for i := range pairs {
		out[pairs[i].GetName()] = pairs[i].GetValue()
	}
	return out
}

func TestRecordAndServe(t *testing.T) {
	m := New()
	s := NewServers(m, t.Logf)
	release := s.Retain("127.0.0.1:0")
	defer release()
	addr := s.Bound("127.0.0.1:0", 10*time.Second)
	if _, err := netip.ParseAddrPort(addr); err != nil {
		t.Fatalf("bound address %q", addr)
	}
	a := Attrs{Operation: "chat", Provider: "openai", OriginalModel: "llama", RequestModel: "llama-3-8b", ResponseModel: "llama-3-8b"}
	r := Request{Attrs: a, Duration: 1.5, Streaming: true, HasTTFT: true, TTFT: 0.2, HasTPOT: true, TPOT: 0.03,
		Tokens: [5]uint64{12, 30, 8, 0, 0}, HasTokens: [5]bool{true, true, true, false, false}}
	m.Record(&r)
	failed := r
	failed.ErrorType, failed.HasTokens = "truncated", [5]bool{}
	m.Record(&failed)

	fams := scrape(t, addr)
	usage := fams["gen_ai_client_token_usage"]
	if usage == nil || usage.GetType() != dto.MetricType_HISTOGRAM || len(usage.GetMetric()) != 3 {
		t.Fatalf("token usage family: %v", usage)
	}
	byType := map[string]*dto.Histogram{}
	for _, mt := range usage.GetMetric() {
		l := labels(mt)
		if l["gen_ai_operation_name"] != "chat" || l["gen_ai_original_model"] != "llama" || l["gen_ai_request_model"] != "llama-3-8b" ||
			l["gen_ai_response_model"] != "llama-3-8b" || l["gen_ai_provider_name"] != "openai" {
			t.Errorf("labels %v", l)
		}
		byType[l["gen_ai_token_type"]] = mt.GetHistogram()
	}
	if byType["input"].GetSampleSum() != 12 || byType["output"].GetSampleSum() != 30 || byType["cached_input"].GetSampleSum() != 8 {
		t.Errorf("token sums %v", byType)
	}
	if b := byType["input"].GetBucket(); len(b) != len(tokenBuckets)+1 || b[len(b)-2].GetUpperBound() != 67108864 { // and +Inf
		t.Errorf("token buckets %v", b)
	}
	dur := fams["gen_ai_server_request_duration_seconds"]
	if dur == nil || len(dur.GetMetric()) != 2 {
		t.Fatalf("duration family %v", dur)
	}
	errs := 0
	for _, mt := range dur.GetMetric() {
		if labels(mt)["error_type"] == "truncated" {
			errs++
		}
	}
	if errs != 1 {
		t.Errorf("one failed request's duration carries error_type: %v", dur)
	}
	if h := fams["gen_ai_server_time_to_first_token_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleCount() != 2 {
		t.Errorf("TTFT count %d, want 2 (failed streams too)", h.GetSampleCount())
	}
	if h := fams["gen_ai_server_time_per_output_token_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() != 0.03 {
		t.Errorf("TPOT %v, want the successful request only", h)
	}
}

// A second hold on an address shares the listener; it closes with the last.
func TestServersShareAndRelease(t *testing.T) {
	s := NewServers(New(), t.Logf)
	r1 := s.Retain("127.0.0.1:0")
	addr := s.Bound("127.0.0.1:0", 10*time.Second)
	r2 := s.Retain("127.0.0.1:0")
	r1()
	r1() // idempotent
	if got := s.Bound("127.0.0.1:0", time.Second); got != addr {
		t.Fatalf("after one release the listener moved: %q -> %q", addr, got)
	}
	resp, err := http.Get("http://" + addr + Path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Contains(string(body), "gen_ai") {
		t.Errorf("empty metrics: %d %q", resp.StatusCode, body)
	}
	r2()
	if _, err := http.Get("http://" + addr + Path); err == nil {
		t.Error("the listener is still up after the last release")
	}
}

// An address in use is retried until it frees up.
func TestServerRetriesBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := NewServers(New(), t.Logf)
	defer s.Retain(addr)()
	if got := s.Bound(addr, 100*time.Millisecond); got != "" {
		t.Fatalf("bound %q while the port was taken", got)
	}
	ln.Close()
	if got := s.Bound(addr, 10*time.Second); got != addr {
		t.Fatalf("not bound after the port was freed: %q", got)
	}
}
