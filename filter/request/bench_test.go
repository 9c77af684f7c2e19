package request

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

var benchSizes = []int{1 << 10, 64 << 10, 1 << 20}

// BenchmarkParse measures Parse next to encoding/json decoding into
// struct{Model string} on the same chat bodies, whose model key comes last.
func BenchmarkParse(b *testing.B) {
	for _, size := range benchSizes {
		body := chatBody(size, "meta-llama/Llama-3.1-8B-Instruct")
		b.Run(fmt.Sprintf("size=%dKiB/impl=inflow", size>>10), func(b *testing.B) { benchParse(b, body) })
		b.Run(fmt.Sprintf("size=%dKiB/impl=encoding_json", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var v struct{ Model string }
				if err := json.Unmarshal(body, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRewriteModel(b *testing.B) {
	body := chatBody(64<<10, "client-model")
	var r Request
	if err := Parse(ChatCompletions, body, &r); err != nil {
		b.Fatal(err)
	}
	quoted := []byte(`"served-model-lora-a"`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		_ = RewriteModel(body, &r, quoted)
	}
}

// BenchmarkParseLongString is make bench-hop's body: one long ASCII
// string, the scanner's fast path.
func BenchmarkParseLongString(b *testing.B) {
	head, tail := `{"model":"llama","messages":[{"role":"user","content":"`, `"}]}`
	benchParse(b, []byte(head+strings.Repeat("a", 1<<20-len(head)-len(tail))+tail))
}

func benchParse(b *testing.B, body []byte) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var r Request
	for b.Loop() {
		if err := Parse(ChatCompletions, body, &r); err != nil {
			b.Fatal(err)
		}
	}
}
