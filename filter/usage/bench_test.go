package usage

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/inflow-gateway/inflow/filter/request"
)

// benchChunk is a typical vLLM chat chunk: one token of content, ~200 bytes.
var benchChunk = []byte(chatChunk(" simulated"))

// benchBig is a 64 KiB piece holding many events (a burst the proxy read
// at once), cut mid-event at both ends.
var benchBig = func() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 64<<10+len(benchChunk); i++ {
		b.WriteString(chatChunk(strings.Repeat("tok ", 1+i%5)))
	}
	return b.Bytes()[len(benchChunk)/2 : len(benchChunk)/2+64<<10]
}()

// BenchmarkSSE measures the cost per body piece of an ongoing chat stream:
// a ~200-byte chunk and a 64 KiB piece, accounting only and with the
// usage chunk being stripped (the default when the client did not ask).
func BenchmarkSSE(b *testing.B) {
	for _, bc := range []struct {
		name  string
		piece []byte
		strip bool
	}{
		{"chunk=200B", benchChunk, false},
		{"chunk=200B/strip", benchChunk, true},
		{"chunk=64KiB", benchBig, false},
		{"chunk=64KiB/strip", benchBig, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var a Accountant
			a.Reset(request.ChatCompletions, SSE, bc.strip)
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.piece)))
			for b.Loop() {
				a.Filter(bc.piece, false)
			}
		})
	}
}

// BenchmarkJSON measures a non-streaming body read in 64 KiB pieces (an
// embeddings response, mostly numbers).
func BenchmarkJSON(b *testing.B) {
	var body bytes.Buffer
	body.WriteString(`{"id":"embd-1","object":"list","created":1,"model":"e5","data":[`)
	for i := 0; body.Len() < 1<<20; i++ {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(`{"index":0,"object":"embedding","embedding":[0.0123,-0.4567,0.891,0.00012,-0.33,0.5,0.25,-0.125]}`)
	}
	body.WriteString(`],"usage":{"prompt_tokens":7,"total_tokens":7}}`)
	pieces := split(body.Bytes(), func() []int {
		var c []int
		for i := 64 << 10; i < body.Len(); i += 64 << 10 {
			c = append(c, i)
		}
		return c
	}())
	var a Accountant
	b.ReportAllocs()
	b.SetBytes(int64(body.Len()))
	for b.Loop() {
		a.Reset(request.Embeddings, JSON, false)
		for _, p := range pieces {
			a.Write(p)
		}
		if r := a.Finish(true); r.Usage.Input != 7 {
			b.Fatalf("result %+v", r)
		}
	}
}

// BenchmarkGzip measures decoding a gzip stream per piece: each
// compressed event as the server flushed it (~200 bytes decoded), and
// 64 KiB of compressed stream at once.
func BenchmarkGzip(b *testing.B) {
	// Content varies like text does, so the stream compresses like a real
	// one (about 6:1), not like a repeated chunk.
	r := rand.New(rand.NewPCG(5, 6))
	words := strings.Fields("the of and a to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when your can said")
	var evs []string
	for i := 0; i < 20000; i++ {
		evs = append(evs, strings.Replace(chatChunk(" "+words[r.IntN(len(words))]), "chatcmpl-1", fmt.Sprintf("chatcmpl-%d", r.Uint64()), 1))
	}
	b.Run("chunk=200B", func(b *testing.B) {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		var pieces [][]byte
		var plain int
		for _, e := range evs {
			buf.Reset()
			_, _ = w.Write([]byte(e))
			_ = w.Flush()
			pieces = append(pieces, bytes.Clone(buf.Bytes()))
			plain += len(e)
		}
		decodeLoop(b, pieces, int64(plain/len(pieces)))
	})
	b.Run("chunk=64KiB", func(b *testing.B) {
		z := compress(b, Gzip, evs)
		var pieces [][]byte
		for i := 0; i < len(z); i += 64 << 10 {
			pieces = append(pieces, z[i:min(i+64<<10, len(z))])
		}
		decodeLoop(b, pieces[:len(pieces)-1], 64<<10)
	})
}

// decodeLoop decodes pieces of a gzip stream in turn, starting a new
// stream (untimed) after the last.
func decodeLoop(b *testing.B, pieces [][]byte, bytesPerOp int64) {
	d := NewDecoder(Gzip)
	defer func() { d.Close() }()
	b.ReportAllocs()
	b.SetBytes(bytesPerOp)
	i := 0
	for b.Loop() {
		if i == len(pieces) {
			b.StopTimer()
			d.Close()
			d, i = NewDecoder(Gzip), 0
			b.StartTimer()
		}
		if _, err := d.Decode(pieces[i], false); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
