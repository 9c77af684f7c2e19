package usage

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/inflow-gateway/inflow/filter/request"
)

// compress encodes body the way a streaming server does: one flush per
// event, so every event can be decoded as soon as its bytes arrive.
func compress(t testing.TB, enc Encoding, events []string) []byte {
	var buf bytes.Buffer
	var w interface {
		io.Writer
		Flush() error
		Close() error
	}
	if enc == Deflate {
		w = zlib.NewWriter(&buf)
	} else {
		w = gzip.NewWriter(&buf)
	}
	for _, e := range events {
		if _, err := w.Write([]byte(e)); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func events(body string) []string {
	parts := strings.SplitAfter(body, "\n\n")
	if parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return parts
}

func decodeAll(d *Decoder, pieces [][]byte) ([]byte, error) {
	var out []byte
	for i, p := range pieces {
		b, err := d.Decode(bytes.Clone(p), i == len(pieces)-1)
		out = append(out, b...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func TestDecoderAnyCuts(t *testing.T) {
	for _, enc := range []Encoding{Gzip, Deflate} {
		z := compress(t, enc, events(chatStream))
		r := rand.New(rand.NewPCG(3, 4))
		for range 200 {
			cuts := []int{r.IntN(len(z)), r.IntN(len(z)), r.IntN(len(z)), r.IntN(len(z))}
			slicesSort(cuts)
			d := NewDecoder(enc)
			got, err := decodeAll(d, split(z, cuts))
			d.Close()
			if err != nil || string(got) != chatStream {
				t.Fatalf("encoding %d cuts %v: %q, %v", enc, cuts, got, err)
			}
		}
	}
}

// Each flushed event decodes as soon as its compressed bytes arrive: the
// decoder streams, it does not wait for the end.
func TestDecoderStreams(t *testing.T) {
	evs := events(chatStream)
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	d := NewDecoder(Gzip)
	defer d.Close()
	for _, e := range evs {
		buf.Reset()
		_, _ = w.Write([]byte(e))
		_ = w.Flush()
		got, err := d.Decode(bytes.Clone(buf.Bytes()), false)
		if err != nil || string(got) != e {
			t.Fatalf("event decoded as %q (%v), want %q", got, err, e)
		}
	}
}

func TestDecoderErrors(t *testing.T) {
	z := compress(t, Gzip, events(chatStream))
	d := NewDecoder(Gzip)
	if _, err := decodeAll(d, [][]byte{z[:len(z)-10]}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated stream: %v, want unexpected EOF", err)
	}
	d = NewDecoder(Gzip)
	bad := bytes.Clone(z)
	bad[len(bad)-6] ^= 0xff // the CRC
	if _, err := decodeAll(d, [][]byte{bad}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("bad checksum: %v, want ErrCorrupt", err)
	}
	d = NewDecoder(Gzip)
	if _, err := decodeAll(d, [][]byte{[]byte("not gzip at all")}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("not gzip: %v, want ErrCorrupt", err)
	}
	// Closing a decoder mid-stream ends its coroutine.
	d = NewDecoder(Gzip)
	if _, err := d.Decode(z[:20], false); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d.Close()
}

// The accountant on decoded pieces of a gzip stream gives what it gives on
// the plain stream, and a stripped gzip stream re-encoded decodes to the
// stripped plain stream.
func TestGzipStreamAccounting(t *testing.T) {
	z := compress(t, Gzip, events(chatStream))
	plain, plainOut := account(request.ChatCompletions, SSE, true, [][]byte{[]byte(chatStream)}, true)
	d := NewDecoder(Gzip)
	defer d.Close()
	e := NewEncoder(Gzip)
	var a Accountant
	a.Reset(request.ChatCompletions, SSE, true)
	var client []byte
	pieces := split(z, []int{7, 40, 41, 100, 180})
	for i, p := range pieces {
		end := i == len(pieces)-1
		dec, err := d.Decode(p, end)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := a.Filter(dec, end)
		client = append(client, e.Encode(out, end)...)
	}
	if got := a.Finish(true); got != plain {
		t.Errorf("gzip result %+v, plain %+v", got, plain)
	}
	zr, err := gzip.NewReader(bytes.NewReader(client))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, plainOut) {
		t.Errorf("client decodes %q (%v), want %q", got, err, plainOut)
	}
}

func TestParseEncoding(t *testing.T) {
	for in, want := range map[string]Encoding{"": Identity, "identity": Identity, "GZIP": Gzip, " x-gzip ": Gzip, "deflate": Deflate, "br": Unsupported, "gzip, br": Unsupported} {
		if got := ParseEncoding(in); got != want {
			t.Errorf("ParseEncoding(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRestrictAcceptEncoding(t *testing.T) {
	for in, want := range map[string]string{
		"gzip":                        "",
		"gzip, deflate":               "",
		"gzip;q=1.0, identity; q=0.5": "",
		"gzip, deflate, br, zstd":     "gzip, deflate",
		"br":                          "-",
		"*;q=0.3, br":                 "gzip;q=0.3, deflate;q=0.3",
		"BR;q=1, GZIP;q=0.8":          "GZIP;q=0.8",
	} {
		got, changed := RestrictAcceptEncoding(in)
		switch {
		case want == "" && (changed || got != in):
			t.Errorf("%q needs no rewrite, got %q", in, got)
		case want == "-" && (!changed || got != ""):
			t.Errorf("%q: got %q %v, want nothing left", in, got, changed)
		case want != "" && want != "-" && (!changed || got != want):
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
