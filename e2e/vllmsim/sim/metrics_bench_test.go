package sim

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkMetricsPage is what one scrape costs the simulator: rendering
// and writing /metrics for a server that has served its base model and
// two adapters (so every histogram and LoRA series is there). One
// goroutine, so ns/op is the CPU time per scrape.
func BenchmarkMetricsPage(b *testing.B) {
	opts := fastOptions()
	opts.LoRAs, opts.MaxLoRAs = []string{"sql-lora", "tweet-lora"}, 2
	s, err := Start(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i, model := range []string{"m", "sql-lora", "tweet-lora"} {
		body := fmt.Sprintf(`{"model":%q,"max_tokens":4,"messages":[{"role":"user","content":"question %d %s"}]}`, model, i, strings.Repeat("x", 400))
		resp, err := http.Post(s.URL()+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
	h := s.routes()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b.SetBytes(int64(rec.Body.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
}
