package envoyfilter

import (
	"strings"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/request"
	"github.com/inflow-gateway/inflow/filter/router"
	"github.com/inflow-gateway/inflow/filter/usage"
)

// What each response tells the scheduler about the endpoint that served
// it: its time to first token and time per output token, its failures, and
// vLLM's per-response load report.

// loadReportFormat is the format the filter asks vLLM for.
const loadReportFormat = "TEXT"

// askLoadReport asks the server for a load report when the pool wants
// them and the server sends one for this request: vLLM reports on
// non-streaming chat and completions responses only.
func (f *filter) askLoadReport(h api.RequestHeaderMap, req *request.Request, d *router.Decision) {
	s := d.Model.Scheduler
	if s == nil || !s.Feedback().LoadReports || req.Stream || (req.Kind != request.ChatCompletions && req.Kind != request.Completions) {
		return
	}
	if _, ok := h.Get(protocol.HeaderLoadMetricsFormat); ok {
		return // the client asked: it gets the header, the filter reads it too
	}
	h.Set(protocol.HeaderLoadMetricsFormat, loadReportFormat)
	f.resp.askedLoad = true
}

// servedEndpoint is the endpoint that answered: the primary, or with
// fallbacks (Envoy retries the next one) the upstream host Envoy used.
func (f *filter) servedEndpoint() *pool.Endpoint {
	r := f.resp
	if r.served != nil || r.ndests == 0 {
		return r.served
	}
	r.served = r.dests[0]
	if r.ndests > 1 {
		if addr, ok := f.callbacks.StreamInfo().UpstreamRemoteAddress(); ok {
			for _, ep := range r.dests[:r.ndests] {
				if ep.Addr == addr {
					r.served = ep
				}
			}
		}
	}
	return r.served
}

// observeHeaders reads the response headers: a load report updates the
// endpoint's numbers (and is removed when only the filter asked for it), a
// 5xx cools the endpoint down.
func (f *filter) observeHeaders(h api.ResponseHeaderMap) {
	r := f.resp
	ep := f.servedEndpoint()
	if ep == nil {
		return
	}
	now := time.Now()
	if v, ok := h.Get(protocol.HeaderLoadMetrics); ok {
		if rep, ok := pool.ParseLoadReport(v); ok {
			ep.ApplyLoadReport(rep, now)
		}
		if r.askedLoad {
			h.Del(protocol.HeaderLoadMetrics)
		}
	}
	if r.status >= 500 {
		f.failEndpoint(ep, now)
	}
}

func (f *filter) failEndpoint(ep *pool.Endpoint, now time.Time) {
	fb := f.resp.sched.Feedback()
	ep.Fail(now, fb.Cooldown, fb.MaxCooldown)
}

// feedback runs when the response is done: a stream's time per output
// token (its time to first token was fed back at its first byte); an
// error event in a 200 stream and an upstream reset count as failures, a
// client that went away does not.
func (f *filter) feedback(r *response, res *usage.Result, lat latency, complete bool) {
	ep := f.servedEndpoint()
	if ep == nil || r.status >= 500 {
		return
	}
	now := time.Now()
	if r.status == 0 || !complete {
		if details, _ := f.callbacks.StreamInfo().ResponseCodeDetails(); strings.HasPrefix(details, "upstream_reset") {
			f.failEndpoint(ep, now)
		}
		return
	}
	if r.status < 200 || r.status >= 300 {
		return
	}
	if res.Outcome == usage.ErrorEvent {
		f.failEndpoint(ep, now)
		return
	}
	if lat.hasITL {
		ep.ObserveTPOT(lat.itl, now)
	}
	ep.ObserveDuration(now.Sub(r.sent), now)
	ep.Succeed()
}

// observeFirstByte feeds a stream's time to first token (from the moment
// the request was sent upstream) back when its first byte arrives: at the
// end of the stream it would come a whole generation late, seconds during
// which picks still see the old average.
func (f *filter) observeFirstByte(r *response) {
	if !r.stream || r.status < 200 || r.status >= 300 {
		return
	}
	if ep := f.servedEndpoint(); ep != nil {
		ep.ObserveTTFT(r.firstByte.Sub(r.sent), r.firstByte)
	}
}
