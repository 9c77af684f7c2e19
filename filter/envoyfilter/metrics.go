package envoyfilter

import (
	"net/http"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/decide"
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
	ejections     api.CounterMetric
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
		ejections:     cb.DefineCounterMetric(protocol.StatBackendEjections),
		inFlight:      cb.DefineGaugeMetric(protocol.StatInFlight),
	}
}

func (m *metrics) undefined() bool { return m.requests == nil }

func inc(c api.CounterMetric) {
	if c != nil {
		c.Increment(1)
	}
}

// countRejection counts a reply of the filter's own by status class
// (decide.RejectionStat); a success counts nothing.
func (m *metrics) countRejection(status int) {
	switch decide.RejectionStat(status) {
	case protocol.StatRejected413:
		inc(m.tooLarge)
	case protocol.StatRejected404:
		inc(m.notFound)
	case protocol.StatRejected405:
		inc(m.wrongMethod)
	case protocol.StatRejected429:
		inc(m.shed)
	case protocol.StatRejected503:
		inc(m.unavailable)
	case protocol.StatInternalErrors:
		inc(m.internalError)
	case protocol.StatRejected400:
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
