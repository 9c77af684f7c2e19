package usage

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"iter"
	"strings"
)

// Decoder decodes a gzip or deflate response body piece by piece as it
// arrives, in time linear in the body: each compressed byte is read once.
//
// The decompressors of the standard library pull their input through an
// io.Reader and fail for good when it runs dry, so they cannot be fed
// push-style. The Decoder runs one in a coroutine (iter.Pull): when it
// needs input that has not arrived, it yields back to Decode, which
// resumes it with the next piece. The switch happens on the calling
// thread (no goroutine is scheduled, nothing blocks), so it is safe on an
// Envoy worker.
type Decoder struct {
	next  func() (struct{}, bool)
	stop  func()
	yield func(struct{}) bool

	in  []byte
	eof bool
	out []byte
	buf [16 << 10]byte
	err error
	// done: the compressed stream ended (or failed); Decode returns err.
	done bool
}

// Encoding is a content-encoding the Decoder can read.
type Encoding uint8

const (
	Identity Encoding = iota
	Gzip
	Deflate
	// Unsupported is any other coding: the body cannot be read.
	Unsupported
)

// ParseEncoding maps a Content-Encoding header value. Stacked codings
// ("gzip, br") are unsupported.
func ParseEncoding(v string) Encoding {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "identity":
		return Identity
	case "gzip", "x-gzip":
		return Gzip
	case "deflate":
		return Deflate
	}
	return Unsupported
}

// ErrCorrupt wraps decompression errors.
var ErrCorrupt = errors.New("usage: corrupt compressed body")

// errStopped ends a decoder that was closed before its stream ended.
var errStopped = errors.New("usage: decoder closed")

// NewDecoder returns a decoder for enc (Gzip or Deflate).
func NewDecoder(enc Encoding) *Decoder {
	d := &Decoder{}
	d.next, d.stop = iter.Pull(func(yield func(struct{}) bool) {
		d.yield = yield
		var r io.ReadCloser
		var err error
		if enc == Deflate {
			r, err = zlib.NewReader(d)
		} else {
			r, err = gzip.NewReader(d)
		}
		for err == nil {
			var n int
			n, err = r.Read(d.buf[:])
			d.out = append(d.out, d.buf[:n]...)
		}
		d.done = true
		switch {
		case errors.Is(err, errStopped), err == io.EOF:
		case errors.Is(err, io.ErrUnexpectedEOF):
			d.err = io.ErrUnexpectedEOF
		default:
			d.err = errors.Join(ErrCorrupt, err)
		}
	})
	return d
}

// Read feeds the decompressor: what Decode was given, then a yield until
// the next piece arrives.
func (d *Decoder) Read(p []byte) (int, error) {
	for len(d.in) == 0 {
		if d.eof {
			return 0, io.EOF
		}
		if !d.yield(struct{}{}) {
			return 0, errStopped
		}
	}
	n := copy(p, d.in)
	d.in = d.in[n:]
	return n, nil
}

// Decode decompresses the next piece; end says it is the last. The result
// is valid until the next call. Bytes after the end of the compressed
// stream are ignored. At the end, an incomplete stream gives
// io.ErrUnexpectedEOF and corrupt data an error wrapping ErrCorrupt (with
// whatever decoded before it).
func (d *Decoder) Decode(p []byte, end bool) ([]byte, error) {
	d.out = d.out[:0]
	if d.done {
		return nil, d.err
	}
	d.in, d.eof = p, end
	d.next()
	d.in = nil
	if d.done || end {
		if !d.done {
			d.stop()
		}
		return d.out, d.err
	}
	return d.out, nil
}

// Close releases the decoder's coroutine; call it when the stream ends
// however it ends. Safe to call more than once.
func (d *Decoder) Close() {
	if !d.done {
		d.stop()
		d.done = true
	}
}

// Encoder re-encodes a body the gateway changed (a stripped stream) in
// the coding the server used, flushing after each piece so the stream
// stays a stream. The client decodes the same bytes the server's stream
// would have given, minus what was stripped; the compressed bytes differ.
type Encoder struct {
	buf bytes.Buffer
	w   interface {
		io.Writer
		Flush() error
		Close() error
	}
}

// NewEncoder returns an encoder for enc (Gzip or Deflate).
func NewEncoder(enc Encoding) *Encoder {
	e := &Encoder{}
	if enc == Deflate {
		e.w = zlib.NewWriter(&e.buf)
	} else {
		e.w = gzip.NewWriter(&e.buf)
	}
	return e
}

// Encode compresses p; end closes the stream. The result is valid until
// the next call.
func (e *Encoder) Encode(p []byte, end bool) []byte {
	e.buf.Reset()
	// Writes to a bytes.Buffer do not fail.
	_, _ = e.w.Write(p)
	if end {
		_ = e.w.Close()
	} else {
		_ = e.w.Flush()
	}
	return e.buf.Bytes()
}

// RestrictAcceptEncoding rewrites an Accept-Encoding request header so a
// server can only pick codings the Decoder reads: gzip, x-gzip, deflate and
// identity keep their q-values, "*" becomes "gzip, deflate" with its q, and
// any other coding (br, zstd, ...) is dropped. changed is false when v
// needs no rewrite; an empty result means: send no Accept-Encoding
// (identity only).
func RestrictAcceptEncoding(v string) (out string, changed bool) {
	var kept []string
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		coding, params, hasParams := strings.Cut(part, ";")
		switch c := strings.ToLower(strings.TrimSpace(coding)); c {
		case "gzip", "x-gzip", "deflate", "identity":
			kept = append(kept, part)
		case "*":
			changed = true
			for _, name := range [...]string{"gzip", "deflate"} {
				if hasParams {
					name += ";" + params
				}
				kept = append(kept, name)
			}
		default:
			changed = true
		}
	}
	if !changed {
		return v, false
	}
	return strings.Join(kept, ", "), true
}
