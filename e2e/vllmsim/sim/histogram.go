package sim

import "slices"

// Bucket bounds copied from vLLM's PrometheusStatLogger (vllm/v1/metrics/loggers.py), so
// a scraper's histogram_quantile sees the same resolution as against a real server.
var (
	ttftBuckets = []float64{
		0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
		0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
	}
	latencyBuckets = []float64{
		0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
		40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
	}
)

// histogram is a Prometheus histogram: per-bucket (non-cumulative) counts plus sum and count.
type histogram struct {
	bounds []float64 // upper bounds, ascending; +Inf is implicit
	counts []uint64  // len(bounds)+1, the last for +Inf
	sum    float64
	count  uint64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v) // first bound >= v: Prometheus buckets are le
	h.counts[i]++
	h.sum += v
	h.count++
}

// clone copies h so a snapshot can be rendered without the engine lock.
func (h *histogram) clone() histogram {
	c := *h
	c.counts = slices.Clone(h.counts)
	return c
}
