package sharing

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleSnapshot() Snapshot {
	return Snapshot{
		Addr: "10.0.0.1:8000", Age: 1500 * time.Microsecond,
		Waiting: 3, Running: 2, KVCacheUsage: 0.25,
		HasLoRA: true, RunningLoRA: []string{"sql-lora"}, WaitingLoRA: []string{"tweet-lora", "x"},
		MaxLoRA: 2, BlockSize: 16,
	}
}

func samplePlacement() Placement {
	return Placement{Addr: "[fd00::1]:8000", Depth: 94, Parent: 0xdeadbeefcafef00d, Hashes: []uint64{1, 2, math.MaxUint64}}
}

func TestRoundTrip(t *testing.T) {
	snap, pl := sampleSnapshot(), samplePlacement()
	root := Placement{Addr: "10.0.0.2:8000", Hashes: []uint64{7, 8}}
	refresh := Placement{Addr: "10.0.0.2:8000", Depth: 3, Parent: 9}
	empty := Snapshot{Addr: "10.0.0.3:8000"}
	want := Want{Addr: "10.0.0.4:8000", Depth: 94, Parent: 0xfeedface}
	var stream []byte
	stream = AppendWant(stream, &want)
	stream = AppendSnapshot(stream, &snap)
	stream = AppendPlacement(stream, &pl)
	stream = AppendPlacement(stream, &root)
	stream = AppendPlacement(stream, &refresh)
	stream = AppendSnapshot(stream, &empty)

	r := NewReader(bytes.NewReader(stream))
	var gotS Snapshot
	var gotP Placement
	var gotW Want
	next := func() []byte {
		t.Helper()
		body, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	if err := DecodeWant(next(), &gotW); err != nil || gotW != want {
		t.Errorf("want: %+v, %v; want %+v", gotW, err, want)
	}
	if err := DecodeSnapshot(next(), &gotS); err != nil || !reflect.DeepEqual(gotS, snap) {
		t.Errorf("snapshot: %+v, %v; want %+v", gotS, err, snap)
	}
	for _, want := range []Placement{pl, root, refresh} {
		if err := DecodePlacement(next(), &gotP); err != nil || gotP.Addr != want.Addr || gotP.Depth != want.Depth ||
			gotP.Parent != want.Parent || !equalHashes(gotP.Hashes, want.Hashes) {
			t.Errorf("placement: %+v, %v; want %+v", gotP, err, want)
		}
	}
	if err := DecodeSnapshot(next(), &gotS); err != nil || gotS.Addr != empty.Addr || gotS.HasLoRA || len(gotS.RunningLoRA) != 0 {
		t.Errorf("empty snapshot: %+v, %v", gotS, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("end of stream: %v, want io.EOF", err)
	}
}

func equalHashes(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecodeRefusesBadFrames(t *testing.T) {
	snap := sampleSnapshot()
	good := AppendSnapshot(nil, &snap)
	body := good[1:] // one-byte length for this size
	pl := samplePlacement()
	goodP := AppendPlacement(nil, &pl)[1:]
	mutate := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	tests := []struct {
		name string
		body []byte
		snap bool
	}{
		{"snapshot truncated", body[:len(body)-1], true},
		{"snapshot trailing byte", append(bytes.Clone(body), 0), true},
		{"snapshot as placement", body, false},
		{"placement as snapshot", goodP, true},
		{"NaN waiting", mutate(body, func(b []byte) []byte {
			i := 1 + 1 + len(snap.Addr) + 2 // type, addr length, addr, age (2 bytes)
			copy(b[i:], le(math.Float64bits(math.NaN())))
			return b
		}), true},
		{"kv above 1", func() []byte {
			s := snap
			s.KVCacheUsage = 1.5
			return AppendSnapshot(nil, &s)[1:]
		}(), true},
		{"too many adapters", func() []byte {
			s := snap
			s.RunningLoRA = make([]string, maxLoRAs+1)
			return AppendSnapshot(nil, &s)[2:] // two-byte length
		}(), true},
		{"placement truncated", goodP[:len(goodP)-3], false},
		{"empty placement", AppendPlacement(nil, &Placement{Addr: "a:1"})[1:], false},
		{"depth plus hashes over the limit", AppendPlacement(nil, &Placement{Addr: "a:1", Depth: MaxHashes, Parent: 1, Hashes: []uint64{1}})[1:], false},
		{"address too long", AppendPlacement(nil, &Placement{Addr: strings.Repeat("a", 300), Hashes: []uint64{1}})[2:], false},
		{"empty body", nil, true},
		{"want of depth 0", AppendWant(nil, &Want{Addr: "a:1"})[1:], false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			switch {
			case tc.snap:
				err = DecodeSnapshot(tc.body, new(Snapshot))
			case len(tc.body) > 0 && tc.body[0] == TypeWant:
				err = DecodeWant(tc.body, new(Want))
			default:
				err = DecodePlacement(tc.body, new(Placement))
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func le(v uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

func TestReaderLimits(t *testing.T) {
	tests := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"zero length", []byte{0}, ErrTooLarge},
		{"over the frame limit", []byte{0x81, 0x80, 0x04}, ErrTooLarge}, // 65537
		{"cut inside a frame", []byte{5, TypePlacement, 1}, io.ErrUnexpectedEOF},
		{"cut inside the length", []byte{0x80}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewReader(bytes.NewReader(tc.stream)).Next(); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// A decoded frame re-encodes to a frame that decodes to the same value: a
// relay that checks frames and a replica that reads them agree on every
// input, and nothing panics.
func FuzzDecode(f *testing.F) {
	snap, pl := sampleSnapshot(), samplePlacement()
	f.Add(AppendSnapshot(nil, &snap)[1:])
	f.Add(AppendPlacement(nil, &pl)[1:])
	f.Add([]byte{TypePlacement, 1, 'a', 0, 1, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(AppendWant(nil, &Want{Addr: "a:1", Depth: 3, Parent: 9})[1:])
	f.Fuzz(func(t *testing.T, body []byte) {
		var s Snapshot
		if DecodeSnapshot(body, &s) == nil {
			r := NewReader(bytes.NewReader(AppendSnapshot(nil, &s)))
			b, err := r.Next()
			var again Snapshot
			if err != nil || DecodeSnapshot(b, &again) != nil {
				t.Fatalf("re-encoded snapshot does not decode: %v", err)
			}
			if !reflect.DeepEqual(normalize(s), normalize(again)) {
				t.Fatalf("snapshot changed: %+v -> %+v", s, again)
			}
		}
		var p Placement
		if DecodePlacement(body, &p) == nil {
			r := NewReader(bytes.NewReader(AppendPlacement(nil, &p)))
			b, err := r.Next()
			var again Placement
			if err != nil || DecodePlacement(b, &again) != nil {
				t.Fatalf("re-encoded placement does not decode: %v", err)
			}
			if again.Addr != p.Addr || again.Depth != p.Depth || again.Parent != p.Parent || !equalHashes(again.Hashes, p.Hashes) {
				t.Fatalf("placement changed: %+v -> %+v", p, again)
			}
		}
		var w Want
		if DecodeWant(body, &w) == nil {
			b, err := NewReader(bytes.NewReader(AppendWant(nil, &w))).Next()
			var again Want
			if err != nil || DecodeWant(b, &again) != nil || again != w {
				t.Fatalf("want changed: %+v -> %+v (%v)", w, again, err)
			}
		}
		// Any stream: frames are read or refused, never a panic.
		r := NewReader(bytes.NewReader(body))
		for range 100 {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	})
}

// normalize makes nil and empty adapter lists equal.
func normalize(s Snapshot) Snapshot {
	if len(s.RunningLoRA) == 0 {
		s.RunningLoRA = nil
	}
	if len(s.WaitingLoRA) == 0 {
		s.WaitingLoRA = nil
	}
	return s
}
