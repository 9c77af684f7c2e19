package envoyfilter

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
)

// sdkBuffer behaves like the Go SDK's BufferInstance over Envoy's buffer,
// at the cost of the SDK's and Envoy's own work: Bytes copies the body out
// into a new slice (HttpGetBuffer's make+copy), Set copies the new body
// in, Drain drops bytes from the front and Prepend adds a slice in front
// holding a copy of what is prepended (Buffer::OwnedImpl). It reuses its
// memory (Envoy's side is C++), so what the benchmark allocates is the
// filter's and the SDK's.
type sdkBuffer struct {
	api.BufferInstance
	mem   []byte
	tail  []byte   // mem after what was drained
	front [][]byte // prepended slices, the last prepended last
	spare [][]byte // their memory, reused
}

func (b *sdkBuffer) load(p []byte) {
	b.mem = append(b.mem[:0], p...)
	b.tail, b.front = b.mem, b.front[:0]
}
func (b *sdkBuffer) Bytes() []byte {
	out := make([]byte, 0, b.Len())
	for i := len(b.front) - 1; i >= 0; i-- {
		out = append(out, b.front[i]...)
	}
	return append(out, b.tail...)
}
func (b *sdkBuffer) Len() int {
	n := len(b.tail)
	for _, s := range b.front {
		n += len(s)
	}
	return n
}
func (b *sdkBuffer) Set(p []byte) error {
	b.load(p)
	return nil
}
func (b *sdkBuffer) Drain(n int) {
	for n > 0 && len(b.front) > 0 {
		last := &b.front[len(b.front)-1]
		k := min(n, len(*last))
		if *last, n = (*last)[k:], n-k; len(*last) == 0 {
			b.front = b.front[:len(b.front)-1]
		}
	}
	b.tail = b.tail[min(n, len(b.tail)):]
}
func (b *sdkBuffer) Prepend(p []byte) error {
	k := len(b.front)
	if k == len(b.spare) {
		b.spare = append(b.spare, nil)
	}
	b.spare[k] = append(b.spare[k][:0], p...)
	b.front = append(b.front, b.spare[k])
	return nil
}

// benchCompletion is what e2e/harness's fake backend answers (make
// bench-hop's backend).
const benchCompletion = `{"id":"c1","object":"chat.completion","created":1,"model":"llama-3-8b","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`

// benchConfig is make bench-hop's filter config: "llama" rewritten to
// "llama-3-8b", served by a pool of one endpoint.
const benchConfig = `{
  "models": [{"name": "llama", "pool": "bench", "rewrite": [{"model": "llama-3-8b"}]}],
  "pools": [{"name": "bench", "endpoints": ["127.0.0.1:9"]}]
}`

// BenchmarkStream is one bench-hop request through the filter as Envoy
// drives it: the request path (headers, the buffered body copied out of
// Envoy, the parse, the pick, the model rewrite written back, headers and
// metadata), then the response path of a JSON completion (usage
// accounting, metrics, the endpoint's feedback). Run with -tags
// inflow_request_only for the request path alone, as make bench-hop's
// ext_proc setups do it.
func BenchmarkStream(b *testing.B) {
	h := newHarness(b, benchConfig)
	testLog.quiet.Store(true)
	defer testLog.quiet.Store(false)
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		head, tail := `{"model":"llama","messages":[{"role":"user","content":"`, `"}]}`
		body := []byte(head + strings.Repeat("a", size-len(head)-len(tail)) + tail)
		cl := strconv.Itoa(len(body))
		b.Run(fmt.Sprintf("size=%dKiB", size>>10), func(b *testing.B) {
			hdr := newHeaders("POST", "/v1/chat/completions", "content-length", cl, "content-type", "application/json")
			respHdr := &fakeResponseHeaders{status: 200, m: map[string]string{"content-type": "application/json"}}
			buf, resp := &sdkBuffer{}, &sdkBuffer{}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				cb := newCallbacks()
				f := Factory(h.cfg, cb).(*filter)
				hdr.m["content-length"] = cl
				buf.load(body)
				if f.DecodeHeaders(hdr, false) != api.StopAndBuffer || f.DecodeData(buf, true) != api.Continue {
					b.Fatalf("not routed: %+v", cb.decoder.replies)
				}
				resp.load([]byte(benchCompletion))
				f.EncodeHeaders(respHdr, false)
				f.EncodeData(resp, true)
				f.OnStreamComplete()
				f.OnDestroy(api.Normal)
			}
		})
	}
}
