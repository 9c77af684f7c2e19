package request

import (
	"encoding/binary"
	"math/bits"
	"testing"
)

// TestStringStopsFindsFirstSpecialByte checks the SWAR mask against a
// byte-at-a-time definition for every byte value in every lane, with
// specials below and above it.
func TestStringStopsFindsFirstSpecialByte(t *testing.T) {
	special := func(c byte) bool { return c < 0x20 || c == '"' || c == '\\' || c >= 0x80 }
	fillers := []byte{'a', 0x00, '"', 0xff, 0x1f, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80}
	for lane := 0; lane < 8; lane++ {
		for c := 0; c < 256; c++ {
			for _, below := range fillers {
				for _, above := range fillers {
					var w [8]byte
					for i := range w {
						switch {
						case i < lane:
							w[i] = below
						case i == lane:
							w[i] = byte(c)
						default:
							w[i] = above
						}
					}
					want := 8
					for i, b := range w {
						if special(b) {
							want = i
							break
						}
					}
					got := 8
					if m := stringStops(binary.LittleEndian.Uint64(w[:])); m != 0 {
						got = bits.TrailingZeros64(m) >> 3
					}
					if got != want {
						t.Fatalf("word % x: first stop at %d, want %d", w, got, want)
					}
				}
			}
		}
	}
}
