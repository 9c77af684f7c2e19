// Package sharing is the wire format of the pool state Inflow replicas share
// through the state relay (controlplane/relay): where each replica sent
// which prompt prefix (so every replica's prefix index learns every
// replica's placements) and each endpoint's scraped metrics (so one scrape
// of a server serves every replica). It is pure: no I/O beyond a reader of
// frames, no Envoy, no Kubernetes (NewTransport only configures the HTTP/2
// client both ends dial with).
//
// A stream is a sequence of frames, each uvarint(len(body)) then body; a
// body is a type byte and the type's fields. Integers are uvarints, hashes
// and floats 8 bytes little-endian, strings uvarint(len) then the bytes.
// Decoding checks every length against the limits below, so a bad peer can
// make a stream fail but cannot make a reader allocate more than a frame.
package sharing

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// Frame types.
const (
	TypeSnapshot  byte = 1
	TypePlacement byte = 2
	TypeWant      byte = 3
)

// Limits of one frame. MaxHashes is config.MaxMaxBlocks: no prompt hashes
// more blocks than that.
const (
	MaxFrameBytes = 64 << 10
	MaxHashes     = 4096
	maxAddrBytes  = 255
	maxLoRAs      = 64
	maxNameBytes  = 256
)

// ContentType names the stream in HTTP requests and responses.
const ContentType = "application/x-inflow-sharing-v1"

// Path is the relay's HTTP path of a pool's channel: POST Path+pool, the
// request body the replica's frames, the response body everyone else's.
const Path = "/inflow.sharing.v1/pools/"

// Errors a decoder returns; each is wrapped with what was wrong.
var (
	ErrMalformed = errors.New("sharing: malformed frame")
	ErrTooLarge  = errors.New("sharing: frame too large")
)

// Snapshot is one scrape of an endpoint's /metrics, reduced as
// pool.Metrics is.
type Snapshot struct {
	Addr string
	// Age is how old the scrape was when the snapshot was written; the
	// receiver dates it from its own clock, so replicas need no common
	// time.
	Age                            time.Duration
	Waiting, Running, KVCacheUsage float64
	HasLoRA                        bool
	RunningLoRA, WaitingLoRA       []string
	MaxLoRA                        int
	BlockSize                      int
}

// Placement says a replica sent a prompt to the endpoint at Addr: the
// endpoint now holds the chain of block hashes whose first Depth blocks it
// was believed to hold already (the last of them is Parent), followed by
// Hashes. Sending only the blocks after what the endpoint held keeps a
// turn of a known conversation to a few hashes; a receiver finds the rest
// in its own index.
type Placement struct {
	Addr   string
	Depth  int
	Parent uint64 // hash of block Depth-1; 0 when Depth is 0
	Hashes []uint64
}

// Want asks the other replicas for a chain the sender could not record: a
// Placement on the endpoint at Addr extended a prefix the sender's index
// does not have (it joined after the prefix was placed, or the relay was
// down). It names the placement's whole chain, Depth blocks ending in
// Parent; a replica that has that chain (the placement's sender does)
// answers with a Placement of all of it (Depth 0).
type Want struct {
	Addr   string
	Depth  int
	Parent uint64
}

// AppendWant appends w as a frame to dst.
func AppendWant(dst []byte, w *Want) []byte {
	n := 1 + uvarintLen(uint64(len(w.Addr))) + len(w.Addr) + uvarintLen(uint64(w.Depth)) + 8
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = append(dst, TypeWant)
	dst = appendString(dst, w.Addr)
	dst = binary.AppendUvarint(dst, uint64(w.Depth))
	return binary.LittleEndian.AppendUint64(dst, w.Parent)
}

// DecodeWant reads a TypeWant frame body.
func DecodeWant(body []byte, w *Want) error {
	if len(body) == 0 || body[0] != TypeWant {
		return fmt.Errorf("%w: not a want", ErrMalformed)
	}
	d := decoder{b: body[1:]}
	w.Addr = d.str("address", maxAddrBytes)
	w.Depth = int(d.uvarint("depth", MaxHashes))
	w.Parent = d.u64("parent")
	if d.err == nil && w.Depth == 0 {
		d.fail("depth 0")
	}
	return d.end()
}

// AppendSnapshot appends s as a frame to dst.
func AppendSnapshot(dst []byte, s *Snapshot) []byte {
	body := make([]byte, 0, 64+len(s.Addr))
	body = append(body, TypeSnapshot)
	body = appendString(body, s.Addr)
	body = binary.AppendUvarint(body, uint64(max(s.Age, 0)/time.Microsecond))
	for _, f := range [...]float64{s.Waiting, s.Running, s.KVCacheUsage} {
		body = binary.LittleEndian.AppendUint64(body, math.Float64bits(f))
	}
	var flags byte
	if s.HasLoRA {
		flags = 1
	}
	body = append(body, flags)
	body = binary.AppendUvarint(body, uint64(max(s.MaxLoRA, 0)))
	body = binary.AppendUvarint(body, uint64(max(s.BlockSize, 0)))
	for _, list := range [...][]string{s.RunningLoRA, s.WaitingLoRA} {
		body = binary.AppendUvarint(body, uint64(len(list)))
		for _, name := range list {
			body = appendString(body, name)
		}
	}
	return appendFrame(dst, body)
}

// AppendPlacement appends p as a frame to dst.
func AppendPlacement(dst []byte, p *Placement) []byte {
	n := placementBodyLen(p)
	dst = slices.Grow(dst, binary.MaxVarintLen64+n)
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = append(dst, TypePlacement)
	dst = appendString(dst, p.Addr)
	dst = binary.AppendUvarint(dst, uint64(p.Depth))
	if p.Depth > 0 {
		dst = binary.LittleEndian.AppendUint64(dst, p.Parent)
	}
	dst = binary.AppendUvarint(dst, uint64(len(p.Hashes)))
	for _, h := range p.Hashes {
		dst = binary.LittleEndian.AppendUint64(dst, h)
	}
	return dst
}

// placementBodyLen is the encoded length of p's body, so the frame length
// can be written before the body without a second buffer.
func placementBodyLen(p *Placement) int {
	n := 1 + uvarintLen(uint64(len(p.Addr))) + len(p.Addr) + uvarintLen(uint64(p.Depth))
	if p.Depth > 0 {
		n += 8
	}
	return n + uvarintLen(uint64(len(p.Hashes))) + 8*len(p.Hashes)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func appendFrame(dst, body []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(body)))
	return append(dst, body...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// Reader reads frames from a stream.
type Reader struct {
	r   *bufio.Reader
	buf []byte
}

// NewReader reads frames from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 32<<10)} }

// Next returns the next frame's body (type byte first), valid until the
// next call. It returns io.EOF at a clean end of stream, and an error
// wrapping ErrTooLarge or io.ErrUnexpectedEOF for a bad one.
func (r *Reader) Next() ([]byte, error) {
	n, err := binary.ReadUvarint(r.r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: length: %w", ErrMalformed, err)
	}
	if n == 0 || n > MaxFrameBytes {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrTooLarge, n, MaxFrameBytes)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(r.r, r.buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return r.buf, nil
}

// decoder reads the fields of one frame body; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
}

func (d *decoder) uvarint(what string, limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > limit {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u64(what string) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail(what)
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) float(what string) float64 {
	f := math.Float64frombits(d.u64(what))
	if d.err == nil && (math.IsNaN(f) || math.IsInf(f, 0) || f < 0) {
		d.fail(what + ": not a finite non-negative number")
	}
	return f
}

func (d *decoder) str(what string, limit int) string {
	n := int(d.uvarint(what, uint64(limit)))
	if d.err != nil {
		return ""
	}
	if len(d.b) < n {
		d.fail(what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

// DecodeSnapshot reads a TypeSnapshot frame body.
func DecodeSnapshot(body []byte, s *Snapshot) error {
	if len(body) == 0 || body[0] != TypeSnapshot {
		return fmt.Errorf("%w: not a snapshot", ErrMalformed)
	}
	d := decoder{b: body[1:]}
	*s = Snapshot{Addr: d.str("address", maxAddrBytes)}
	s.Age = time.Duration(d.uvarint("age", uint64(math.MaxInt64/int64(time.Microsecond)))) * time.Microsecond
	s.Waiting, s.Running, s.KVCacheUsage = d.float("waiting"), d.float("running"), d.float("kv cache usage")
	if d.err == nil && s.KVCacheUsage > 1 {
		d.fail("kv cache usage above 1")
	}
	if d.err == nil {
		if len(d.b) == 0 || d.b[0] > 1 {
			d.fail("flags")
		} else {
			s.HasLoRA = d.b[0] == 1
			d.b = d.b[1:]
		}
	}
	s.MaxLoRA = int(d.uvarint("max lora", math.MaxInt32))
	s.BlockSize = int(d.uvarint("block size", math.MaxInt32))
	for _, list := range [...]*[]string{&s.RunningLoRA, &s.WaitingLoRA} {
		n := int(d.uvarint("lora count", maxLoRAs))
		for range n {
			*list = append(*list, d.str("lora name", maxNameBytes))
		}
	}
	return d.end()
}

// DecodePlacement reads a TypePlacement frame body into p, reusing
// p.Hashes' storage.
func DecodePlacement(body []byte, p *Placement) error {
	if len(body) == 0 || body[0] != TypePlacement {
		return fmt.Errorf("%w: not a placement", ErrMalformed)
	}
	d := decoder{b: body[1:]}
	p.Addr = d.str("address", maxAddrBytes)
	p.Depth = int(d.uvarint("depth", MaxHashes))
	p.Parent = 0
	if p.Depth > 0 {
		p.Parent = d.u64("parent")
	}
	n := int(d.uvarint("hash count", MaxHashes-uint64(p.Depth)))
	p.Hashes = p.Hashes[:0]
	if d.err == nil && len(d.b) < 8*n {
		d.fail("hashes")
	}
	for range n {
		p.Hashes = append(p.Hashes, d.u64("hash"))
	}
	if d.err == nil && p.Depth == 0 && n == 0 {
		d.fail("empty placement")
	}
	return d.end()
}
