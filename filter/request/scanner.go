package request

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// maxDepth matches encoding/json's nesting limit, so both accept the same
// documents.
const maxDepth = 10000

// scanner validates JSON in place. It keeps no per-value state beyond a
// bit stack of open containers, so scanning allocates nothing.
type scanner struct {
	buf   []byte
	pos   int
	depth int
	// open has bit d set when the container at depth d is an object; deep
	// continues it past depth 63, allocated only for such documents.
	open uint64
	deep []uint64
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// stringStops marks, per byte of x, the bytes a string scan must stop at:
// control characters, '"', '\\' and non-ASCII (to validate UTF-8). Only
// the lowest marked byte is exact, which is the one the caller uses.
//
// Per byte, v - 1 sets the top bit when v == 0 and, like v - 0x20 for
// v < 0x20, otherwise only when the byte was already >= 0x80, which x
// itself marks; a borrow only moves up from a byte that is marked.
func stringStops(x uint64) uint64 {
	return ((x - lsb*0x20) | x | ((x ^ lsb*'"') - lsb) | ((x ^ lsb*'\\') - lsb)) & msb
}

// utf8Len returns the length of the valid UTF-8 sequence starting at b[i]
// (a byte >= 0x80), or 0 when it is invalid: overlong forms, surrogates and
// code points above U+10FFFF are rejected, as unicode/utf8 does.
func utf8Len(b []byte, i int) int {
	c := b[i]
	n := len(b) - i
	switch {
	case c < 0xC2:
		return 0
	case c < 0xE0:
		if n >= 2 && b[i+1]&0xC0 == 0x80 {
			return 2
		}
	case c < 0xF0:
		lo, hi := byte(0x80), byte(0xBF)
		if c == 0xE0 {
			lo = 0xA0
		} else if c == 0xED {
			hi = 0x9F
		}
		if n >= 3 && lo <= b[i+1] && b[i+1] <= hi && b[i+2]&0xC0 == 0x80 {
			return 3
		}
	case c < 0xF5:
		lo, hi := byte(0x80), byte(0xBF)
		if c == 0xF0 {
			lo = 0x90
		} else if c == 0xF4 {
			hi = 0x8F
		}
		if n >= 4 && lo <= b[i+1] && b[i+1] <= hi && b[i+2]&0xC0 == 0x80 && b[i+3]&0xC0 == 0x80 {
			return 4
		}
	}
	return 0
}

// whitespace marks JSON's four insignificant whitespace bytes.
var whitespace = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

func (s *scanner) skipSpace() {
	for s.pos < len(s.buf) && whitespace[s.buf[s.pos]] {
		s.pos++
	}
}

// scanString scans the string starting at s.pos (a '"') and leaves s.pos
// after its closing quote. escaped reports whether it holds a backslash.
func (s *scanner) scanString() (escaped bool, err error) {
	b := s.buf
	i := s.pos + 1
	for {
		// Long runs of plain text, 32 bytes a step: one branch per step.
		for i+32 <= len(b) {
			w := b[i : i+32 : i+32]
			if stringStops(binary.LittleEndian.Uint64(w))|stringStops(binary.LittleEndian.Uint64(w[8:]))|
				stringStops(binary.LittleEndian.Uint64(w[16:]))|stringStops(binary.LittleEndian.Uint64(w[24:])) != 0 {
				break
			}
			i += 32
		}
		for i+16 <= len(b) {
			m0 := stringStops(binary.LittleEndian.Uint64(b[i:]))
			m1 := stringStops(binary.LittleEndian.Uint64(b[i+8:]))
			if m0|m1 != 0 {
				if m0 != 0 {
					i += bits.TrailingZeros64(m0) >> 3
				} else {
					i += 8 + bits.TrailingZeros64(m1)>>3
				}
				goto stop
			}
			i += 16
		}
		for i+8 <= len(b) {
			if m := stringStops(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(b) {
			return false, syntaxErr(len(b), "unexpected end of input in string")
		}
	stop:
		switch c := b[i]; {
		case c == '"':
			s.pos = i + 1
			return escaped, nil
		case c == '\\':
			if i+1 < len(b) && shortEscape[b[i+1]] {
				escaped = true
				i += 2
				continue
			}
			n, err := escapeLen(b, i)
			if err != nil {
				return false, err
			}
			escaped = true
			i += n
		case c < 0x20:
			return false, syntaxErr(i, "control character in string")
		case c >= utf8.RuneSelf:
			// Non-ASCII text comes in runs; validate the whole run here.
			for i < len(b) && b[i] >= utf8.RuneSelf {
				// Two-byte sequences (Latin accents) inline; the rest in utf8Len.
				if c := b[i]; c >= 0xC2 && c < 0xE0 && i+1 < len(b) && b[i+1]&0xC0 == 0x80 {
					i += 2
					continue
				}
				n := utf8Len(b, i)
				if n == 0 {
					return false, syntaxErr(i, "invalid UTF-8 in string")
				}
				i += n
			}
		default:
			i++
		}
	}
}

// shortEscape marks the characters of two-byte escapes such as \n.
var shortEscape = [256]bool{'"': true, '\\': true, '/': true, 'b': true, 'f': true, 'n': true, 'r': true, 't': true}

// escapeLen validates the escape sequence at b[i] ('\\') and returns its length.
func escapeLen(b []byte, i int) (int, error) {
	if i+1 >= len(b) {
		return 0, syntaxErr(len(b), "unexpected end of input in string escape")
	}
	switch b[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, nil
	case 'u':
		if i+6 > len(b) {
			return 0, syntaxErr(len(b), "unexpected end of input in \\u escape")
		}
		for _, c := range b[i+2 : i+6] {
			if hexValue(c) < 0 {
				return 0, syntaxErr(i, "invalid \\u escape")
			}
		}
		return 6, nil
	}
	return 0, syntaxErr(i, "invalid escape in string")
}

func hexValue(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

func (s *scanner) scanNumber() error {
	b, i := s.buf, s.pos
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return syntaxErr(i, "invalid number")
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return syntaxErr(j, "invalid number: no digits after decimal point")
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return syntaxErr(j, "invalid number: no digits in exponent")
		}
		i = j
	}
	s.pos = i
	return nil
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

func (s *scanner) scanLiteral(lit string) error {
	if len(s.buf)-s.pos < len(lit) || string(s.buf[s.pos:s.pos+len(lit)]) != lit {
		return syntaxErr(s.pos, "invalid literal")
	}
	s.pos += len(lit)
	return nil
}

// scanScalar scans a string, number or literal at s.pos.
func (s *scanner) scanScalar() error {
	switch c := s.buf[s.pos]; c {
	case '"':
		_, err := s.scanString()
		return err
	case 't':
		return s.scanLiteral("true")
	case 'f':
		return s.scanLiteral("false")
	case 'n':
		return s.scanLiteral("null")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return s.scanNumber()
		}
		return syntaxErr(s.pos, "invalid character looking for beginning of value")
	}
}

func (s *scanner) push(object bool) error {
	s.depth++
	if s.depth > maxDepth {
		return syntaxErr(s.pos, "exceeded max nesting depth")
	}
	word, bit := s.wordFor(s.depth)
	if object {
		*word |= 1 << bit
	} else {
		*word &^= 1 << bit
	}
	return nil
}

func (s *scanner) topIsObject() bool {
	word, bit := s.wordFor(s.depth)
	return *word&(1<<bit) != 0
}

func (s *scanner) wordFor(depth int) (*uint64, uint) {
	if depth < 64 {
		return &s.open, uint(depth)
	}
	i := depth/64 - 1
	for len(s.deep) <= i {
		s.deep = append(s.deep, 0)
	}
	return &s.deep[i], uint(depth % 64)
}

// expectKey scans `"key" :` at s.pos (after optional space) and leaves
// s.pos at the value.
func (s *scanner) expectKey() (start, end int, escaped bool, err error) {
	s.skipSpace()
	if s.pos >= len(s.buf) || s.buf[s.pos] != '"' {
		return 0, 0, false, s.unexpected("looking for beginning of object key string")
	}
	start = s.pos
	if escaped, err = s.scanString(); err != nil {
		return 0, 0, false, err
	}
	end = s.pos
	s.skipSpace()
	if s.pos >= len(s.buf) || s.buf[s.pos] != ':' {
		return 0, 0, false, s.unexpected("after object key")
	}
	s.pos++
	s.skipSpace()
	return start, end, escaped, nil
}

func (s *scanner) unexpected(context string) error {
	if s.pos >= len(s.buf) {
		return syntaxErr(s.pos, "unexpected end of input")
	}
	return syntaxErr(s.pos, "invalid character "+context)
}

// skipValue scans one complete value at s.pos (after optional space),
// iteratively so deep nesting costs no stack.
func (s *scanner) skipValue() error {
	base := s.depth
	for {
		s.skipSpace()
		if s.pos >= len(s.buf) {
			return s.unexpected("")
		}
		switch s.buf[s.pos] {
		case '{':
			if s.depth >= maxDepth {
				return syntaxErr(s.pos, "exceeded max nesting depth")
			}
			s.pos++
			s.skipSpace()
			if s.pos < len(s.buf) && s.buf[s.pos] == '}' {
				s.pos++
				break
			}
			if err := s.push(true); err != nil {
				return err
			}
			if _, _, _, err := s.expectKey(); err != nil {
				return err
			}
			continue
		case '[':
			if s.depth >= maxDepth {
				return syntaxErr(s.pos, "exceeded max nesting depth")
			}
			s.pos++
			s.skipSpace()
			if s.pos < len(s.buf) && s.buf[s.pos] == ']' {
				s.pos++
				break
			}
			if err := s.push(false); err != nil {
				return err
			}
			continue
		default:
			if err := s.scanScalar(); err != nil {
				return err
			}
		}
		// A value ended: close containers until one wants another element.
		for {
			if s.depth == base {
				return nil
			}
			s.skipSpace()
			if s.pos >= len(s.buf) {
				return s.unexpected("")
			}
			c := s.buf[s.pos]
			object := s.topIsObject()
			if c == ',' {
				s.pos++
				if object {
					if _, _, _, err := s.expectKey(); err != nil {
						return err
					}
				}
				break
			}
			if object && c == '}' || !object && c == ']' {
				s.pos++
				s.depth--
				continue
			}
			if object {
				return s.unexpected("after object key:value pair")
			}
			return s.unexpected("after array element")
		}
	}
}
