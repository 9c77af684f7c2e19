package usage

// stripper removes usage-only events from a stream on their way to the
// client. The stream is cut into segments at blank lines; a segment that
// could still turn out to be the usage-only chunk is held back until it
// can not (its "choices" is not empty, it grew past maxCandidate) or its
// blank line arrives, when it is dropped or passed on whole. Every other
// byte passes on in the piece it arrived in, so what is held is at most
// one partial event. Offsets are absolute positions in the body.
type stripper struct {
	on       bool
	segStart int64 // where the current segment began
	holding  bool  // the current segment is held back (a candidate)
	emitted  int64 // bytes before this were passed on or dropped
	start    int64 // offset of the current piece
	// held is bytes [emitted, start): the candidate's bytes from earlier
	// pieces. spare is the other buffer for the next held.
	held, spare []byte
	drops       [4]span
	ndrops      int
	lastDropped bool
	dropped     int // events dropped over the stream
	out         []byte
}

type span struct{ from, to int64 }

// maxCandidate bounds a held segment: vLLM's usage chunk is ~300 bytes,
// so a segment this long is content, not the chunk.
const maxCandidate = 16 << 10

func (s *stripper) reset(on bool) {
	*s = stripper{on: on, holding: on, held: s.held[:0], spare: s.spare[:0], out: s.out[:0]}
}

func (s *stripper) begin(pos int64, _ []byte) { s.start = pos }

// blank ends a segment at end; drop says it is a usage-only event.
func (s *stripper) blank(_ *sse, end int64, drop bool) {
	s.lastDropped = false
	if s.holding && drop && end-s.segStart <= maxCandidate && s.ndrops < len(s.drops) {
		s.drops[s.ndrops] = span{s.segStart, end}
		s.ndrops++
		s.dropped++
		s.lastDropped = true
	}
	s.segStart, s.holding = end, true
}

// lf: the LF of a blank line's CRLF arrived in a later piece; it belongs to
// the segment that line ended.
func (s *stripper) lf(end int64) {
	if s.lastDropped {
		if d := &s.drops[max(s.ndrops-1, 0)]; s.ndrops > 0 && d.to == end-1 {
			d.to = end
		} else if s.ndrops < len(s.drops) {
			s.drops[s.ndrops] = span{end - 1, end}
			s.ndrops++
		}
	}
	s.segStart = end
}

func (s *stripper) data(x *sse, end int64) {
	if s.holding && (x.json.choicesNonEmpty() || end-s.segStart > maxCandidate) {
		s.holding = false
	}
}

// finish decides what of the piece p (and of what was held) passes on.
func (s *stripper) finish(p []byte, end bool) ([]byte, bool) {
	pieceEnd := s.start + int64(len(p))
	if s.holding && pieceEnd-s.segStart > maxCandidate {
		s.holding = false
	}
	safe := pieceEnd
	if s.holding && !end {
		safe = s.segStart
	}
	if s.ndrops == 0 && s.emitted == s.start && safe == pieceEnd {
		s.emitted = pieceEnd
		return p, false
	}
	out := s.out[:0]
	from := s.emitted
	for _, d := range s.drops[:s.ndrops] {
		out = s.appendRange(out, p, from, min(d.from, safe))
		from = max(from, d.to)
	}
	out = s.appendRange(out, p, from, safe)
	s.ndrops = 0
	next := s.appendRange(s.spare[:0], p, max(safe, s.emitted), pieceEnd)
	s.spare, s.held = s.held[:0], next
	s.emitted, s.out = max(safe, s.emitted), out
	return out, true
}

// appendRange appends body bytes [from, to) that are in held or p.
func (s *stripper) appendRange(dst, p []byte, from, to int64) []byte {
	if from >= to {
		return dst
	}
	if from < s.start {
		hEnd := min(to, s.start)
		dst = append(dst, s.held[from-s.emitted:hEnd-s.emitted]...)
		from = hEnd
	}
	if from < to {
		dst = append(dst, p[from-s.start:to-s.start]...)
	}
	return dst
}
