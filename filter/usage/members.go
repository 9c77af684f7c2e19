package usage

import "bytes"

// members scans one JSON document fed in pieces of any size and captures
// the raw bytes of a few members: the top-level "type", "model", "usage",
// "error" and "choices", and "model", "usage" and "error" of a top-level
// "response" (Responses API) or "message" (Anthropic) object. It does not
// validate: a model server's output is trusted to be JSON, and garbage
// only yields missing captures. Its state is a fixed-size struct: no
// allocation, and every byte is looked at once (string contents are
// skipped with bytes.IndexByte).
type members struct {
	depth    int
	inString bool
	// escaped: the next string byte is escaped by an unpaired backslash.
	escaped bool
	started bool // the top-level value began
	closed  bool // ... and ended

	lvl [3]level // key tracking of the object levels 1 and 2
	// innerNext: the level-1 member whose value starts next is "response"
	// or "message", so an object there is the inner object.
	innerNext bool

	cur     slot // capturing slot, or slotNone
	curDeep int  // level of the member being captured
	capFrom int  // where the capture resumes in the piece being fed
	// choicesFull: a "choices" value was seen that is not an empty array;
	// set as soon as its first bytes tell, and kept until reset, so it does
	// not depend on where the document was cut.
	choicesFull bool

	caps [numSlots]capture
	data [captureBytes]byte
}

// slot names a captured member.
type slot uint8

const (
	slotType slot = iota
	slotModel
	slotUsage
	slotError
	slotChoices
	slotInnerModel
	slotInnerUsage
	slotInnerError
	numSlots
	slotNone = numSlots
)

// slotSize bounds each capture: usage objects with details are ~300 bytes,
// and nothing here needs more than the first bytes of an error or of
// choices (whose emptiness is all that matters).
var slotSize = [numSlots]int{
	slotType: 64, slotModel: 256, slotUsage: 1024, slotError: 64, slotChoices: 16,
	slotInnerModel: 256, slotInnerUsage: 1024, slotInnerError: 64,
}

const captureBytes = 64 + 256 + 1024 + 64 + 16 + 256 + 1024 + 64

var slotOffset = func() (off [numSlots]int) {
	n := 0
	for s := range numSlots {
		off[s] = n
		n += slotSize[s]
	}
	if n != captureBytes {
		panic("usage: captureBytes does not match slotSize")
	}
	return off
}()

type capture struct {
	n        int
	seen     bool
	overflow bool
}

type phase uint8

const (
	keyNext phase = iota
	inKey
	colonNext
	valueNext
	afterValue
)

// maxKey is the longest key worth reading; longer ones match nothing.
const maxKey = 16

type level struct {
	object bool
	inner  bool // level 2 only: the value of "response" or "message"
	phase  phase
	keyLen int // > maxKey: too long to be one we capture
	key    [maxKey]byte
}

func (m *members) reset() {
	m.depth, m.inString, m.escaped, m.started, m.closed = 0, false, false, false, false
	m.innerNext, m.choicesFull = false, false
	m.cur, m.curDeep = slotNone, 0
	m.caps = [numSlots]capture{}
}

// get returns a captured value with surrounding whitespace trimmed, and
// whether it is complete (seen and not cut by its size bound).
func (m *members) get(s slot) ([]byte, bool) {
	c := &m.caps[s]
	if !c.seen {
		return nil, false
	}
	v := bytes.TrimRight(m.data[slotOffset[s]:slotOffset[s]+c.n], " \t\r\n")
	return v, !c.overflow && m.cur != s
}

// present reports whether a member was seen with a value other than null
// (its first bytes are enough).
func (m *members) present(s slot) bool {
	v, _ := m.get(s)
	return m.caps[s].seen && !isNull(v)
}

// choicesNonEmpty reports whether a "choices" value was seen that is not
// an empty array (or not an array at all).
func (m *members) choicesNonEmpty() bool { return m.choicesFull }

// choicesDecided reports whether the "choices" captured so far is known not
// to be an empty array: its first bytes tell.
func (m *members) choicesDecided() bool {
	c := &m.caps[slotChoices]
	v := m.data[slotOffset[slotChoices] : slotOffset[slotChoices]+c.n]
	if len(v) > 0 && v[0] != '[' {
		return true
	}
	for _, b := range v[min(1, len(v)):] {
		switch b {
		case ' ', '\t', '\r', '\n':
		case ']':
			return false
		default:
			return true
		}
	}
	return c.overflow
}

// structural marks the bytes that matter below level 2, where no key is
// tracked: strings and brackets.
var structural = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true}

// feed scans the next piece of the document.
func (m *members) feed(p []byte) {
	m.capFrom = 0
	for i := 0; i < len(p); i++ {
		if m.inString {
			i = m.stringBytes(p, i) - 1
			continue
		}
		if m.depth > 2 {
			for i < len(p) && !structural[p[i]] {
				i++
			}
			if i == len(p) {
				break
			}
		}
		c := p[i]
		switch c {
		case ' ', '\t', '\r', '\n':
		case '"':
			m.beginValue(c, i)
			if l := m.objectLevel(); l != nil && l.phase == keyNext {
				l.phase, l.keyLen = inKey, 0
			}
			m.inString = true
		case '{', '[':
			m.beginValue(c, i)
			m.depth++
			m.started = true
			if m.depth <= 2 {
				inner := m.depth == 2 && m.innerNext && c == '{'
				m.lvl[m.depth] = level{object: c == '{', inner: inner, phase: keyNext}
			}
			if m.depth == 2 {
				m.innerNext = false
			}
		case '}', ']':
			if m.cur != slotNone && m.depth == m.curDeep {
				m.endCapture(p, i)
			}
			if m.depth > 0 {
				m.depth--
				if m.depth == 0 {
					m.closed = true
				}
			}
		case ',':
			if m.cur != slotNone && m.depth == m.curDeep {
				m.endCapture(p, i)
			}
			if l := m.objectLevel(); l != nil {
				l.phase = keyNext
			}
		case ':':
			if l := m.objectLevel(); l != nil && l.phase == colonNext {
				l.phase = valueNext
			}
		default:
			m.beginValue(c, i)
			if m.depth == 0 {
				m.started = true
			}
		}
	}
	if m.cur != slotNone {
		m.appendCapture(p[m.capFrom:])
		m.decideChoices()
	}
}

// objectLevel is the key state of the current depth when it is an object
// at level 1 or 2.
func (m *members) objectLevel() *level {
	if m.depth < 1 || m.depth > 2 || !m.lvl[m.depth].object {
		return nil
	}
	return &m.lvl[m.depth]
}

// beginValue notes that a value (or a key string) starts with c at the
// current depth, starting a capture when it is a member we want.
func (m *members) beginValue(c byte, at int) {
	l := m.objectLevel()
	if l == nil || l.phase != valueNext {
		return
	}
	l.phase = afterValue
	key := l.key[:min(l.keyLen, maxKey)]
	if l.keyLen > maxKey {
		key = nil
	}
	s := slotNone
	if m.depth == 1 {
		switch string(key) {
		case "type":
			s = slotType
		case "model":
			s = slotModel
		case "usage":
			s = slotUsage
		case "error":
			s = slotError
		case "choices":
			s = slotChoices
		case "response", "message":
			m.innerNext = c == '{'
		}
	} else if l.inner {
		switch string(key) {
		case "model":
			s = slotInnerModel
		case "usage":
			s = slotInnerUsage
		case "error":
			s = slotInnerError
		}
	}
	if s != slotNone {
		m.cur, m.curDeep, m.capFrom = s, m.depth, at
		m.caps[s] = capture{seen: true}
	}
}

// endCapture ends the capture at p[i], the delimiter after its value.
func (m *members) endCapture(p []byte, i int) {
	m.appendCapture(p[m.capFrom:i])
	m.decideChoices()
	m.cur = slotNone
}

// decideChoices updates choicesFull from a "choices" capture; it runs at
// the end of the capture and of every piece, so what a reader sees between
// pieces does not depend on where the document was cut.
func (m *members) decideChoices() {
	if m.cur == slotChoices && !m.choicesFull {
		m.choicesFull = m.choicesDecided()
	}
}

func (m *members) appendCapture(b []byte) {
	if m.cur == slotNone {
		return
	}
	c := &m.caps[m.cur]
	room := slotSize[m.cur] - c.n
	if len(b) > room {
		b = b[:room]
		c.overflow = true
	}
	copy(m.data[slotOffset[m.cur]+c.n:], b)
	c.n += len(b)
}

// stringBytes consumes string contents from p[i:] up to and including the
// closing quote, or all of p when the string goes on.
func (m *members) stringBytes(p []byte, i int) int {
	var key *level
	if l := m.objectLevel(); l != nil && l.phase == inKey {
		key = l
	}
	for start := i; ; {
		q := bytes.IndexByte(p[i:], '"')
		if q < 0 {
			m.stringPiece(key, p[start:])
			m.escaped = oddBackslashes(p[i:], m.escaped)
			return len(p)
		}
		q += i
		n := 0
		for j := q - 1; j >= i && p[j] == '\\'; j-- {
			n++
		}
		if m.escaped && q-n == i {
			n++
		}
		m.escaped = false
		if n%2 == 1 { // an escaped quote: the string goes on
			i = q + 1
			continue
		}
		m.stringPiece(key, p[start:q])
		m.inString = false
		if key != nil {
			key.phase = colonNext
		}
		return q + 1
	}
}

func (m *members) stringPiece(key *level, b []byte) {
	if key == nil {
		return
	}
	if key.keyLen < maxKey {
		copy(key.key[key.keyLen:], b)
	}
	key.keyLen += len(b)
}

// oddBackslashes reports whether the backslashes ending b (continuing the
// carried state escaped when they fill b) leave the next byte escaped.
func oddBackslashes(b []byte, escaped bool) bool {
	n := 0
	for j := len(b) - 1; j >= 0 && b[j] == '\\'; j-- {
		n++
	}
	if n == len(b) && escaped {
		n++
	}
	return n%2 == 1
}
