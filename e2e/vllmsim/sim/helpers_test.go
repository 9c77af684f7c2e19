package sim

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// fastOptions are timings small enough that tests spend their time on logic, not sleeps.
func fastOptions() Options {
	return Options{
		Model:           "m",
		TTFTBase:        20 * time.Microsecond,
		PrefillPerToken: time.Microsecond,
		ITL:             20 * time.Microsecond,
		LoadFactor:      1,
	}
}

// startServer starts a simulator for one test and closes it when the test ends.
func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// testTimeout bounds every wait in these tests, so a hang fails with a message instead
// of stalling the run until go test's own timeout.
const testTimeout = 30 * time.Second

// testCtx is t.Context() bounded by testTimeout.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// receive takes one value from c, failing the test after testTimeout.
func receive[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// send issues a request bounded by testTimeout; the caller closes the body.
func send(t *testing.T, method, url, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp
}

// post sends a JSON body and returns the status and the whole response body.
func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	return do(t, http.MethodPost, url, body)
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	resp := send(t, method, url, body)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}
