package envoyfilter

import (
	"net/http"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/protocol"
)

// metrics are Envoy stats defined through the golang filter's config
// callbacks; they show up in Envoy's /stats under these names.
type metrics struct {
	requests      api.CounterMetric
	rewrites      api.CounterMetric
	badRequest    api.CounterMetric
	notFound      api.CounterMetric
	wrongMethod   api.CounterMetric
	shed          api.CounterMetric
	tooLarge      api.CounterMetric
	unavailable   api.CounterMetric
	internalError api.CounterMetric
	envoy4xx      api.CounterMetric
	envoy5xx      api.CounterMetric
	costErrors    api.CounterMetric
	inFlight      api.GaugeMetric
}

func defineMetrics(cb api.ConfigCallbackHandler) *metrics {
	if cb == nil {
		return &metrics{}
	}
	return &metrics{
		requests:      cb.DefineCounterMetric(protocol.StatRequests),
		rewrites:      cb.DefineCounterMetric(protocol.StatModelRewrites),
		badRequest:    cb.DefineCounterMetric(protocol.StatRejected400),
		notFound:      cb.DefineCounterMetric(protocol.StatRejected404),
		wrongMethod:   cb.DefineCounterMetric(protocol.StatRejected405),
		shed:          cb.DefineCounterMetric(protocol.StatRejected429),
		tooLarge:      cb.DefineCounterMetric(protocol.StatRejected413),
		unavailable:   cb.DefineCounterMetric(protocol.StatRejected503),
		internalError: cb.DefineCounterMetric(protocol.StatInternalErrors),
		envoy4xx:      cb.DefineCounterMetric(protocol.StatEnvoyReplies4xx),
		envoy5xx:      cb.DefineCounterMetric(protocol.StatEnvoyReplies5xx),
		costErrors:    cb.DefineCounterMetric(protocol.StatCostErrors),
		inFlight:      cb.DefineGaugeMetric(protocol.StatInFlight),
	}
}

func (m *metrics) undefined() bool { return m.requests == nil }

func inc(c api.CounterMetric) {
	if c != nil {
		c.Increment(1)
	}
}

func (m *metrics) countRejection(status int) {
	switch {
	case status == http.StatusRequestEntityTooLarge:
		inc(m.tooLarge)
	case status == http.StatusNotFound:
		inc(m.notFound)
	case status == http.StatusMethodNotAllowed:
		inc(m.wrongMethod)
	case status == http.StatusTooManyRequests:
		inc(m.shed)
	case status == http.StatusServiceUnavailable:
		inc(m.unavailable)
	case status >= http.StatusInternalServerError:
		inc(m.internalError)
	case status >= http.StatusBadRequest:
		inc(m.badRequest)
	}
}

// countEnvoyReply counts an error reply Envoy sent to an inference
// request. A 413 also counts as a rejected 413: to the client it is the
// same refusal as the filter's own, whichever limit was hit first.
func (m *metrics) countEnvoyReply(status int) {
	if status == http.StatusRequestEntityTooLarge {
		inc(m.tooLarge)
	}
	if status >= http.StatusInternalServerError {
		inc(m.envoy5xx)
	} else {
		inc(m.envoy4xx)
	}
}

func (m *metrics) addInFlight(delta int64) {
	if m.inFlight != nil {
		m.inFlight.Increment(delta)
	}
}
