package usage

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/inflow-gateway/inflow/filter/request"
)

// FuzzChunking: however a body is cut into pieces, the accountant reports
// the same result and a stripping accountant passes on the same bytes as
// for the whole body in one piece; without stripping it passes the body on
// unchanged. Seeded with every response shape of the table tests.
func FuzzChunking(f *testing.F) {
	for i, sh := range shapes {
		f.Add([]byte(sh.body), uint8(sh.kind), uint8(sh.format), uint64(i))
	}
	f.Add([]byte(chatStream), uint8(request.ChatCompletions), uint8(SSE), uint64(99))
	f.Fuzz(func(t *testing.T, body []byte, kind, format uint8, seed uint64) {
		k := request.Kind(kind%5 + 1)
		fm := Format(format % 2)
		for _, strip := range []bool{false, true} {
			for _, complete := range []bool{true, false} {
				whole, wholeOut := account(k, fm, strip, [][]byte{body}, complete)
				r := rand.New(rand.NewPCG(seed, uint64(len(body))))
				cuts := make([]int, r.IntN(8)+1)
				for i := range cuts {
					if len(body) > 0 {
						cuts[i] = r.IntN(len(body) + 1)
					}
				}
				slicesSort(cuts)
				got, out := account(k, fm, strip, split(body, cuts), complete)
				if got != whole {
					t.Fatalf("kind %v format %v strip %v: cuts %v give %+v, whole body %+v", k, fm, strip, cuts, got, whole)
				}
				if !bytes.Equal(out, wholeOut) {
					t.Fatalf("kind %v strip %v: cuts %v pass on\n%q\nwhole body\n%q", k, strip, cuts, out, wholeOut)
				}
				if !strip && !bytes.Equal(out, body) && complete {
					t.Fatalf("without strip the body changed")
				}
			}
		}
	})
}
