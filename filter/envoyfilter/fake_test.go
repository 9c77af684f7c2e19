package envoyfilter

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
)

// Fakes of the Go filter API. Each embeds the interface it fakes, so a
// call the filter was not expected to make panics, which the filter must
// turn into a 500 like any other panic.

type fakeLog struct {
	mu    sync.Mutex
	lines []string
	// quiet makes the level Info, as Envoy's default, for benchmarks.
	quiet atomic.Bool
}

func (l *fakeLog) Log(_ api.LogType, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, msg)
}

func (l *fakeLog) LogLevel() api.LogType {
	if l.quiet.Load() {
		return api.Info
	}
	return api.Debug
}

func (l *fakeLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

type fakeHeaders struct {
	api.RequestHeaderMap
	m          map[string]string
	panicOnSet bool
}

func newHeaders(method, path string, kv ...string) *fakeHeaders {
	h := &fakeHeaders{m: map[string]string{":method": method, ":path": path}}
	for i := 0; i+1 < len(kv); i += 2 {
		h.m[kv[i]] = kv[i+1]
	}
	return h
}

func (h *fakeHeaders) Path() string   { return h.m[":path"] }
func (h *fakeHeaders) Method() string { return h.m[":method"] }
func (h *fakeHeaders) Get(k string) (string, bool) {
	v, ok := h.m[k]
	return v, ok
}
func (h *fakeHeaders) Set(k, v string) {
	if h.panicOnSet {
		panic("fake header map failure")
	}
	h.m[k] = v
}
func (h *fakeHeaders) Del(k string) { delete(h.m, k) }

type fakeBuffer struct {
	api.BufferInstance
	b []byte
}

// Bytes copies, as the SDK's does (HttpGetBuffer), so the filter cannot
// rely on the slice following the buffer's edits.
func (b *fakeBuffer) Bytes() []byte { return append([]byte(nil), b.b...) }
func (b *fakeBuffer) Len() int      { return len(b.b) }
func (b *fakeBuffer) Set(p []byte) error {
	b.b = append([]byte(nil), p...)
	return nil
}
func (b *fakeBuffer) Drain(n int) { b.b = b.b[min(max(n, 0), len(b.b)):] }
func (b *fakeBuffer) Prepend(p []byte) error {
	b.b = append(append([]byte(nil), p...), b.b...)
	return nil
}

type localReply struct {
	status  int
	body    string
	headers map[string][]string
}

type fakeCallbacks struct {
	api.FilterCallbackHandler
	decoder     fakeDecoder
	encoder     fakeEncoder
	info        fakeStreamInfo
	routeClears int
}

type fakeEncoder struct {
	api.EncoderFilterCallbacks
	added []byte
}

func (e *fakeEncoder) AddData(p []byte, _ bool) { e.added = append(e.added, p...) }

func (c *fakeCallbacks) EncoderFilterCallbacks() api.EncoderFilterCallbacks { return &c.encoder }

func newCallbacks() *fakeCallbacks {
	return &fakeCallbacks{info: fakeStreamInfo{md: fakeMetadata{m: map[string]map[string]any{}}}}
}

func (c *fakeCallbacks) DecoderFilterCallbacks() api.DecoderFilterCallbacks { return &c.decoder }
func (c *fakeCallbacks) StreamInfo() api.StreamInfo                         { return &c.info }
func (c *fakeCallbacks) ClearRouteCache()                                   { c.routeClears++ }

type fakeDecoder struct {
	api.DecoderFilterCallbacks
	replies []localReply
}

func (d *fakeDecoder) SendLocalReply(status int, body string, headers map[string][]string, _ int64, _ string) {
	d.replies = append(d.replies, localReply{status: status, body: body, headers: headers})
}

type fakeStreamInfo struct {
	api.StreamInfo
	md       fakeMetadata
	upstream string // UpstreamRemoteAddress, "" when none
	details  string // ResponseCodeDetails
}

func (i *fakeStreamInfo) UpstreamRemoteAddress() (string, bool) { return i.upstream, i.upstream != "" }

func (i *fakeStreamInfo) DynamicMetadata() api.DynamicMetadata { return &i.md }
func (i *fakeStreamInfo) ResponseCodeDetails() (string, bool) {
	return i.details, i.details != ""
}

type fakeResponseHeaders struct {
	api.ResponseHeaderMap
	status int
	m      map[string]string
}

func (h *fakeResponseHeaders) Status() (int, bool) { return h.status, h.status != 0 }
func (h *fakeResponseHeaders) Get(k string) (string, bool) {
	v, ok := h.m[k]
	return v, ok
}
func (h *fakeResponseHeaders) Del(k string) { delete(h.m, k) }

type fakeMetadata struct {
	api.DynamicMetadata
	m map[string]map[string]any
}

func (m *fakeMetadata) Set(ns, key string, v any) {
	if m.m[ns] == nil {
		m.m[ns] = map[string]any{}
	}
	m.m[ns][key] = v
}

// fakeConfigCallbacks defines metrics; the exporter goroutine updates
// them while tests read them, so they are atomic.
type fakeConfigCallbacks struct {
	mu       sync.Mutex
	counters map[string]*fakeMetric
	gauges   map[string]*fakeMetric
}

func (c *fakeConfigCallbacks) value(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.counters[name]; m != nil {
		return m.v.Load()
	}
	return -1
}

func newConfigCallbacks() *fakeConfigCallbacks {
	return &fakeConfigCallbacks{counters: map[string]*fakeMetric{}, gauges: map[string]*fakeMetric{}}
}

func (c *fakeConfigCallbacks) DefineCounterMetric(name string) api.CounterMetric {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := &fakeMetric{}
	c.counters[name] = m
	return m
}

func (c *fakeConfigCallbacks) DefineGaugeMetric(name string) api.GaugeMetric {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := &fakeMetric{}
	c.gauges[name] = m
	return m
}

type fakeMetric struct{ v atomic.Int64 }

func (m *fakeMetric) Increment(d int64) { m.v.Add(d) }
func (m *fakeMetric) Get() uint64       { return uint64(m.v.Load()) }
func (m *fakeMetric) Record(v uint64)   { m.v.Store(int64(v)) }
