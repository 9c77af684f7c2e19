package pool

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ParseMetrics reads a Prometheus text exposition (format 0.0.4, what vLLM,
// SGLang and trtllm-serve serve) and fills out with the signals names asks
// for. It leaves out.ScrapedAt and out.LastScrape alone.
//
// Why not expfmt: a vLLM /metrics page is mostly histograms the scheduler
// never reads, and expfmt builds a protobuf for every sample of every
// family. Scraping every endpoint 20 times a second makes that the
// dominant background cost, so this scanner skips unwanted lines with one
// IndexByte and parses only the few series it needs. TestParseMatchesExpfmt
// and FuzzParseMatchesExpfmt hold it to expfmt's results.
func ParseMetrics(data []byte, names *MetricNames, out *Metrics) error {
	var acc accumulator
	acc.init()
	var labels []label
	var labelBuf [8]label
	for line := 1; len(data) > 0; line++ {
		var text []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			text, data = data[:i], data[i+1:]
		} else {
			text, data = data, nil
		}
		text = trimBlankTab(text)
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		sig, alt := -1, 0
		var name []byte
		if text[0] != '{' {
			n := metricNameLen(text)
			name = text[:n]
			if sig, alt = names.lookup(name); sig < 0 {
				continue
			}
			text = trimBlankTab(text[n:])
		}
		labels = labelBuf[:0]
		if len(text) > 0 && text[0] == '{' {
			var quoted []byte
			var err error
			labels, quoted, text, err = parseLabels(text[1:], labels)
			if err != nil {
				return fmt.Errorf("metrics line %d: %w", line, err)
			}
			if name == nil {
				if quoted == nil {
					return fmt.Errorf("metrics line %d: missing metric name", line)
				}
				if sig, alt = names.lookup(quoted); sig < 0 {
					continue
				}
			}
			text = trimBlankTab(text)
		}
		v, err := parseValue(text)
		if err != nil {
			return fmt.Errorf("metrics line %d: %w", line, err)
		}
		if err := acc.add(sig, alt, v, labels, names.BlockSizeLabel); err != nil {
			return fmt.Errorf("metrics line %d: %w", line, err)
		}
	}
	acc.finish(out)
	return nil
}

// Signals, in the order lookup reports them.
const (
	sigWaiting = iota
	sigRunning
	sigKV
	sigLoRA
	sigCache
	numSignals
)

func (n *MetricNames) lookup(name []byte) (sig, alt int) {
	for s, alts := range [numSignals][]string{n.Waiting, n.Running, n.KVCacheUsage, n.LoRAInfo, n.CacheConfig} {
		for a, want := range alts {
			if string(name) == want {
				return s, a
			}
		}
	}
	return -1, 0
}

// accumulator folds the series of each signal. Within a signal only the
// series of the first-listed name present count.
type accumulator struct {
	alt   [numSignals]int // best alternative seen; -1 before any
	sum   [numSignals]float64
	count [numSignals]int

	loraTime                   float64
	loraRun, loraWait, loraMax string
	blockSize                  int
}

func (a *accumulator) init() {
	for i := range a.alt {
		a.alt[i] = -1
	}
}

func (a *accumulator) add(sig, alt int, v float64, labels []label, blockLabel string) error {
	if a.alt[sig] >= 0 && alt > a.alt[sig] {
		return nil
	}
	if alt != a.alt[sig] {
		a.alt[sig], a.sum[sig], a.count[sig] = alt, 0, 0
	}
	first := a.count[sig] == 0
	a.sum[sig] += v
	a.count[sig]++
	switch sig {
	case sigLoRA:
		// The value is when the series was last updated: the newest one is
		// the server's current state.
		if !first && v <= a.loraTime {
			return nil
		}
		a.loraTime = v
		a.loraRun, a.loraWait, a.loraMax = "", "", ""
		for _, l := range labels {
			switch string(l.name) {
			case labelRunningLoRA:
				a.loraRun = l.value()
			case labelWaitingLoRA:
				a.loraWait = l.value()
			case labelMaxLoRA:
				a.loraMax = l.value()
			}
		}
	case sigCache:
		if !first {
			return nil
		}
		a.blockSize = 0
		if blockLabel == "" {
			a.blockSize = int(v)
			return nil
		}
		for _, l := range labels {
			if string(l.name) == blockLabel {
				n, err := strconv.Atoi(l.value())
				if err != nil {
					return fmt.Errorf("label %s: %w", blockLabel, err)
				}
				a.blockSize = n
			}
		}
	}
	return nil
}

func (a *accumulator) finish(out *Metrics) {
	*out = Metrics{
		Waiting:    a.sum[sigWaiting],
		Running:    a.sum[sigRunning],
		BlockSize:  a.blockSize,
		ScrapedAt:  out.ScrapedAt,
		LastScrape: out.LastScrape,
	}
	if a.count[sigKV] > 0 {
		out.KVCacheUsage = a.sum[sigKV] / float64(a.count[sigKV])
	}
	if a.count[sigLoRA] > 0 {
		out.HasLoRA = true
		out.RunningLoRA = splitList(a.loraRun)
		out.WaitingLoRA = splitList(a.loraWait)
		out.MaxLoRA, _ = strconv.Atoi(a.loraMax) // absent or odd: no known capacity
	}
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// label is one name="value" pair, still escaped.
type label struct {
	name, raw []byte
	escaped   bool
}

func (l label) value() string {
	if !l.escaped {
		return string(l.raw)
	}
	var b strings.Builder
	for i := 0; i < len(l.raw); i++ {
		c := l.raw[i]
		if c == '\\' && i+1 < len(l.raw) {
			i++
			if c = l.raw[i]; c == 'n' {
				c = '\n'
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

var errLabels = errors.New("malformed label set")

// parseLabels reads the inside of {...}. A quoted string not followed by
// '=' is the metric name (the UTF-8 form {"name",label="v"}).
func parseLabels(s []byte, labels []label) (_ []label, name, rest []byte, err error) {
	for {
		s = trimBlankTab(s)
		if len(s) == 0 {
			return nil, nil, nil, errLabels
		}
		if s[0] == '}' {
			return labels, name, s[1:], nil
		}
		var key []byte
		quotedKey := s[0] == '"'
		if quotedKey {
			var esc bool
			if key, s, esc = quotedToken(s[1:]); s == nil || esc {
				return nil, nil, nil, errLabels
			}
		} else {
			n := labelNameLen(s)
			if n == 0 {
				return nil, nil, nil, errLabels
			}
			key, s = s[:n], s[n:]
		}
		s = trimBlankTab(s)
		if len(s) == 0 {
			return nil, nil, nil, errLabels
		}
		if s[0] != '=' {
			if !quotedKey || name != nil || len(labels) > 0 {
				return nil, nil, nil, errLabels
			}
			name = key
		} else {
			s = trimBlankTab(s[1:])
			if len(s) == 0 || s[0] != '"' {
				return nil, nil, nil, errLabels
			}
			var raw []byte
			var esc bool
			if raw, s, esc = quotedToken(s[1:]); s == nil {
				return nil, nil, nil, errLabels
			}
			labels = append(labels, label{name: key, raw: raw, escaped: esc})
			s = trimBlankTab(s)
		}
		if len(s) > 0 && s[0] == ',' {
			s = s[1:]
		} else if len(s) == 0 || s[0] != '}' {
			return nil, nil, nil, errLabels
		}
	}
}

// quotedToken returns the bytes up to the closing quote, the rest after it
// (nil when there is no closing quote or an escape is invalid) and whether
// it holds escapes.
func quotedToken(s []byte) (tok, rest []byte, escaped bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			return s[:i], s[i+1:], escaped
		case '\\':
			if i+1 == len(s) || (s[i+1] != '"' && s[i+1] != '\\' && s[i+1] != 'n') {
				return nil, nil, false
			}
			escaped = true
			i++
		}
	}
	return nil, nil, false
}

var errValue = errors.New("malformed sample value")

func parseValue(s []byte) (float64, error) {
	n := 0
	for n < len(s) && s[n] != ' ' && s[n] != '\t' {
		n++
	}
	tok := s[:n]
	// Same rule as expfmt: strconv accepts hex floats and underscores, the
	// exposition format does not.
	if n == 0 || bytes.ContainsAny(tok, "pP_") {
		return 0, errValue
	}
	v, err := strconv.ParseFloat(string(tok), 64)
	if err != nil {
		return 0, errValue
	}
	return v, nil
}

func trimBlankTab(s []byte) []byte {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}

func metricNameLen(s []byte) int {
	for i, c := range s {
		if !isLabelChar(c, i) && c != ':' {
			return i
		}
	}
	return len(s)
}

func labelNameLen(s []byte) int {
	for i, c := range s {
		if !isLabelChar(c, i) {
			return i
		}
	}
	return len(s)
}

func isLabelChar(c byte, i int) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || (i > 0 && c >= '0' && c <= '9')
}
