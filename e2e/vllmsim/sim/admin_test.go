package sim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/internal/poll"
)

const completionBody = `{"model":"m","prompt":"hello","max_tokens":2}`

func TestAdminFaultModes(t *testing.T) {
	s := startServer(t, fastOptions())
	tests := []struct {
		name   string
		fault  string
		path   string
		status int
	}{
		{"fail inference", `{"mode":"fail"}`, "/v1/completions", 500},
		{"fail embeddings", `{"mode":"fail"}`, "/v1/embeddings", 500},
		{"metrics only", `{"metrics":"fail"}`, "/metrics", 500},
		{"metrics fault spares inference", `{"metrics":"fail"}`, "/v1/completions", 200},
		{"health", `{"health":"fail"}`, "/health", 500},
		{"healed", `{"mode":"none"}`, "/v1/completions", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if status, body := post(t, s.URL()+"/admin/fault", tc.fault); status != 200 {
				t.Fatalf("set fault: %d %s", status, body)
			}
			method, body := http.MethodPost, completionBody
			if tc.path == "/metrics" || tc.path == "/health" {
				method, body = http.MethodGet, ""
			} else if tc.path == "/v1/embeddings" {
				body = `{"model":"m","input":"x"}`
			}
			status, resp := do(t, method, s.URL()+tc.path, body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, resp)
			}
			if status == 500 && !strings.Contains(resp, `"type":"InternalServerError"`) {
				t.Errorf("500 without vLLM error body: %s", resp)
			}
		})
	}
	status, body := do(t, http.MethodGet, s.URL()+"/admin/fault", "")
	if status != 200 || !strings.Contains(body, `"mode":"none"`) {
		t.Errorf("GET /admin/fault = %d %s", status, body)
	}
}

func TestAdminFaultValidation(t *testing.T) {
	s := startServer(t, fastOptions())
	for _, body := range []string{`{"mode":"explode"}`, `{"mode":"slow","delay":"soon"}`, `{"mode":"fail","rate":2}`, `{"metrics":"x"}`, `{`} {
		t.Run(body, func(t *testing.T) {
			if status, resp := post(t, s.URL()+"/admin/fault", body); status != 400 || !strings.Contains(resp, "BadRequestError") {
				t.Errorf("status %d body %s, want 400", status, resp)
			}
		})
	}
}

func TestSlowFaultDelaysFirstToken(t *testing.T) {
	s := startServer(t, fastOptions())
	const delay = 40 * time.Millisecond
	if err := s.SetFault(Fault{Mode: FaultSlow, Delay: delay}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if status, body := post(t, s.URL()+"/v1/completions", completionBody); status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	// Only a lower bound: a loaded machine can make it slower, never faster.
	if took := time.Since(start); took < delay {
		t.Errorf("slow request took %v, less than the injected %v", took, delay)
	}
}

func TestHangFault(t *testing.T) {
	s := startServer(t, fastOptions())
	if err := s.SetFault(Fault{Mode: FaultHang}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/v1/completions", strings.NewReader(completionBody))
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("hung server answered %d", resp.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the client's deadline", err)
	}

	poll.Eventually(t, "the abandoned request to end", func() bool { return s.hanging.Load() == 0 })

	// Close must end requests that are still hanging.
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(s.URL()+"/v1/completions", "application/json", strings.NewReader(completionBody))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	poll.Eventually(t, "request to hang in the server", func() bool { return s.hanging.Load() == 1 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	receive(t, "the hung request to end on Close", done)
}

func TestFailRates(t *testing.T) {
	tests := []struct {
		name       string
		failRate   float64
		fault      Fault
		wantFailed func(n int) bool
	}{
		{"fail-rate 1 fails all", 1, Fault{}, func(n int) bool { return n == 40 }},
		{"fail-rate 0 fails none", 0, Fault{}, func(n int) bool { return n == 0 }},
		{"fault rate 0.5 fails some", 0, Fault{Mode: FaultFail, Rate: 0.5}, func(n int) bool { return n > 0 && n < 40 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := fastOptions()
			o.FailRate, o.Seed = tc.failRate, 42
			s := startServer(t, o)
			if err := s.SetFault(tc.fault); err != nil {
				t.Fatal(err)
			}
			failed := 0
			for range 40 {
				status, _ := post(t, s.URL()+"/v1/completions", completionBody)
				if status == 500 {
					failed++
				} else if status != 200 {
					t.Fatalf("status %d", status)
				}
			}
			if !tc.wantFailed(failed) {
				t.Errorf("%d of 40 failed", failed)
			}
		})
	}
}

func TestAdminMetricsOverride(t *testing.T) {
	s := startServer(t, fastOptions())
	scrape := func() string {
		status, body := do(t, http.MethodGet, s.URL()+"/metrics", "")
		if status != 200 {
			t.Fatalf("/metrics status %d", status)
		}
		parseMetrics(t, []byte(body))
		return body
	}
	status, body := post(t, s.URL()+"/admin/metrics", `{"num_requests_waiting":12,"kv_cache_usage_perc":0.9,"running_lora_adapters":["a","b"],"max_lora":4}`)
	if status != 200 {
		t.Fatalf("override: %d %s", status, body)
	}
	got := scrape()
	for _, want := range []string{
		`vllm:num_requests_waiting{model_name="m",engine="0"} 12.0`,
		`vllm:kv_cache_usage_perc{model_name="m",engine="0"} 0.9`,
		`max_lora="4",model_name="m",running_lora_adapters="a,b",waiting_lora_adapters=""`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	_, cur := do(t, http.MethodGet, s.URL()+"/admin/metrics", "")
	var o MetricsOverride
	if err := json.Unmarshal([]byte(cur), &o); err != nil || o.NumRequestsWaiting == nil || *o.NumRequestsWaiting != 12 {
		t.Errorf("GET /admin/metrics = %s (%v)", cur, err)
	}
	if status, _ := do(t, http.MethodDelete, s.URL()+"/admin/metrics", ""); status != 200 {
		t.Fatalf("clear status %d", status)
	}
	if got := scrape(); !strings.Contains(got, `vllm:num_requests_waiting{model_name="m",engine="0"} 0.0`) {
		t.Error("override survived DELETE")
	}
	for _, bad := range []string{`{"kv_cache_usage_perc":1.5}`, `{"num_requests_running":-1}`, `[]`} {
		if status, _ := post(t, s.URL()+"/admin/metrics", bad); status != 400 {
			t.Errorf("override %s: status %d, want 400", bad, status)
		}
	}
}
