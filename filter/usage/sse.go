package usage

import "bytes"

// sse reads a text/event-stream body incrementally (WHATWG HTML, "event
// stream interpretation"): lines end with LF, CRLF or CR; a blank line
// dispatches the event; "data:" values, with one optional leading space,
// are streamed into the member scanner, joined by LF as the spec joins
// them, so an event of any size needs no buffer; "event:" is kept
// (bounded); comments and other fields are skipped.
type sse struct {
	state    lineState
	cr       bool  // the last byte was a CR: a LF right after it is the same line break
	crBlank  bool  // ... and that CR was a blank line
	pos      int64 // bytes consumed so far
	first    bool  // the first piece was seen (a leading BOM is skipped there)
	field    [8]byte
	fieldLen int

	dataLines int
	// dataHead holds the first bytes of the event's data and dataLen its
	// length, to recognise "[DONE]" without buffering.
	dataHead [8]byte
	dataLen  int
	event    [32]byte
	eventLen int

	json members
}

type lineState uint8

const (
	lineStart lineState = iota
	inField
	afterColon
	inData
	inEventName
	inSkipped
)

const bom = "\xEF\xBB\xBF"

// sseHandler receives what the parser finds. Offsets are absolute: bytes
// of the body since its start.
type sseHandler interface {
	// blank is called at every blank line, with the offset just after it,
	// before the event state is reset (s.dataLines > 0 means an event).
	blank(s *sse, end int64)
	// lf is called when the LF of a CRLF pair arrives after its CR ended
	// the previous piece, with the offset just after it.
	lf(s *sse, end int64)
	// data is called after each piece of a data value, with the offset just
	// after it.
	data(s *sse, end int64)
}

func (s *sse) reset() {
	*s = sse{}
	s.json.reset()
}

// feed consumes the next piece of the body.
func (s *sse) feed(p []byte, h sseHandler) {
	base := s.pos
	i := 0
	if !s.first {
		s.first = true
		if bytes.HasPrefix(p, []byte(bom)) {
			i = len(bom)
		}
	}
	for i < len(p) {
		c := p[i]
		if s.cr {
			s.cr = false
			if c == '\n' {
				i++
				if s.crBlank && h != nil {
					h.lf(s, base+int64(i))
				}
				continue
			}
		}
		switch s.state {
		case lineStart:
			switch c {
			case '\n', '\r':
				i++
				if c == '\r' && i < len(p) && p[i] == '\n' {
					i++
				} else {
					s.cr, s.crBlank = c == '\r', true
				}
				if h != nil {
					h.blank(s, base+int64(i))
				}
				s.endEvent()
				continue
			case ':':
				s.state = inSkipped
				i++
				continue
			}
			s.state, s.fieldLen = inField, 0
		case inField:
			switch c {
			case ':':
				s.state = afterColon
				i++
			case '\n', '\r':
				s.valueStart() // a line without a colon: the field, empty
				i = s.endLine(p, i)
			default:
				if s.fieldLen < len(s.field) {
					s.field[s.fieldLen] = c
				}
				s.fieldLen++
				i++
			}
		case afterColon:
			if c == ' ' {
				i++
			}
			s.valueStart()
		default: // inData, inEventName, inSkipped
			n := lineEnd(p[i:])
			switch s.state {
			case inData:
				s.data(p[i : i+n])
				if h != nil {
					h.data(s, base+int64(i+n))
				}
			case inEventName:
				s.eventLen += copy(s.event[min(s.eventLen, len(s.event)):], p[i:i+n])
			}
			i += n
			if i < len(p) {
				i = s.endLine(p, i)
			}
		}
	}
	s.pos = base + int64(len(p))
}

// endLine consumes the CR or LF at p[i] that ends a non-blank line.
func (s *sse) endLine(p []byte, i int) int {
	s.cr, s.crBlank = p[i] == '\r', false
	s.state = lineStart
	return i + 1
}

// lineEnd returns the index of the first CR or LF in b, or len(b).
func lineEnd(b []byte) int {
	n := bytes.IndexByte(b, '\n')
	if n < 0 {
		n = len(b)
	}
	if r := bytes.IndexByte(b[:n], '\r'); r >= 0 {
		return r
	}
	return n
}

// valueStart enters the value state of the field just read.
func (s *sse) valueStart() {
	name := s.field[:min(s.fieldLen, len(s.field))]
	switch {
	case s.fieldLen == 4 && string(name) == "data":
		if s.dataLines > 0 {
			s.data(newline)
		}
		s.dataLines++
		s.state = inData
	case s.fieldLen == 5 && string(name) == "event":
		s.eventLen = 0
		s.state = inEventName
	default:
		s.state = inSkipped
	}
}

var newline = []byte{'\n'}

func (s *sse) data(b []byte) {
	if s.dataLen < len(s.dataHead) {
		copy(s.dataHead[s.dataLen:], b)
	}
	s.dataLen += len(b)
	s.json.feed(b)
}

// isDone reports whether the event's data is the "[DONE]" sentinel.
func (s *sse) isDone() bool {
	return s.dataLen == 6 && string(s.dataHead[:6]) == "[DONE]"
}

// eventName is the event's "event:" field, truncated to 32 bytes.
func (s *sse) eventName() []byte { return s.event[:min(s.eventLen, len(s.event))] }

func (s *sse) endEvent() {
	s.dataLines, s.dataLen, s.eventLen = 0, 0, 0
	s.json.reset()
}
