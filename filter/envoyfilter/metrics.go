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
	shed          api.CounterMetric
	tooLarge      api.CounterMetric
	unavailable   api.CounterMetric
	internalError api.CounterMetric
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
		shed:          cb.DefineCounterMetric(protocol.StatRejected429),
		tooLarge:      cb.DefineCounterMetric(protocol.StatRejected413),
		unavailable:   cb.DefineCounterMetric(protocol.StatRejected503),
		internalError: cb.DefineCounterMetric(protocol.StatInternalErrors),
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

func (m *metrics) addInFlight(delta int64) {
	if m.inFlight != nil {
		m.inFlight.Increment(delta)
	}
}
