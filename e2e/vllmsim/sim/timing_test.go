package sim

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/internal/poll"
)

// timeToFirstChunk streams a completion and returns when its first token arrived.
func timeToFirstChunk(t *testing.T, s *Server, body string) time.Duration {
	t.Helper()
	start := time.Now()
	resp := send(t, http.MethodPost, s.URL()+"/v1/completions", body)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var ttft time.Duration
	for sc.Scan() {
		if ttft == 0 && strings.HasPrefix(sc.Text(), "data: {") {
			ttft = time.Since(start)
		}
	}
	if ttft == 0 {
		t.Errorf("no data chunk (status %d)", resp.StatusCode)
	}
	return ttft
}

// TestCachedPrefixShortensTTFT measures, end to end, that a repeated prompt skips the
// prefill of its cached blocks. The gap (200 ms of prefill vs ~0) dwarfs scheduling noise.
func TestCachedPrefixShortensTTFT(t *testing.T) {
	o := fastOptions()
	o.PrefillPerToken = 100 * time.Microsecond
	s := startServer(t, o)
	body := `{"model":"m","stream":true,"max_tokens":2,"prompt":"` + strings.Repeat("0123456789abcdef", 500) + `"}` // 2000 tokens
	cold := timeToFirstChunk(t, s, body)
	warm := timeToFirstChunk(t, s, body)
	if cold < 200*time.Millisecond {
		t.Errorf("cold TTFT %v is below its 200ms prefill", cold)
	}
	if warm >= cold {
		t.Errorf("cached TTFT %v not shorter than cold %v", warm, cold)
	}
	if st := s.Stats(); st.PrefixCacheHits != 2000 || st.PrefixCacheQueries != 4000 {
		t.Errorf("prefix cache hits/queries = %d/%d, want 2000/4000", st.PrefixCacheHits, st.PrefixCacheQueries)
	}
}

// TestQueueWaitCountsInTTFT: with one slot, a request that arrives while another
// generates waits for it, and that wait is part of its time to first token.
func TestQueueWaitCountsInTTFT(t *testing.T) {
	o := fastOptions()
	o.MaxNumSeqs, o.ITL = 1, 5*time.Millisecond
	s := startServer(t, o)
	done := make(chan struct{})
	go func() {
		defer close(done)
		post(t, s.URL()+"/v1/completions", `{"model":"m","prompt":"first","max_tokens":10}`) // >= 45ms of decode
	}()
	poll.Eventually(t, "first request running", func() bool { return s.Stats().Running == 1 })
	ttft := timeToFirstChunk(t, s, `{"model":"m","prompt":"second","max_tokens":1,"stream":true}`)
	receive(t, "the first request", done)
	if ttft < 40*time.Millisecond {
		t.Errorf("queued request's TTFT %v shorter than the decode it waited for", ttft)
	}
	if st := s.Stats(); st.Running != 0 || st.Waiting != 0 || st.KVBlocksUsed != 0 || st.KVCacheUsage != 0 {
		t.Errorf("idle server stats %+v", st)
	}
}
