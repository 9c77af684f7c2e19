// Package split chooses, per request, which of a model's external backends
// serves it: by weight among the backends of the lowest priority that has
// one in service, with a passive health check that takes a backend out of
// service after consecutive 5xx responses (Envoy's outlier detection,
// consecutive_5xx). It is what Envoy AI Gateway's weighted and prioritised
// backendRefs of one rule do, decided in the filter so the served model
// name and the backend are chosen together. It knows nothing of Envoy.
package split

import (
	"sync"
	"sync/atomic"
	"time"
)

// Envoy's outlier detection defaults (api/envoy/config/cluster/v3/
// outlier_detection.proto): consecutive_5xx 5, base_ejection_time 30 s,
// max_ejection_time 300 s; each ejection lasts base x the times ejected.
const (
	Consecutive5xx   = 5
	BaseEjectionTime = 30 * time.Second
	MaxEjectionTime  = 300 * time.Second
)

// Health is the passive health of one backend, shared by every config
// that names it so a config update (in Kubernetes, every pod change) does
// not forget an ejection. Updated with atomics from any worker.
type Health struct {
	failures atomic.Int32 // consecutive 5xx
	// until is when the current ejection ends (unix ns; 0: never ejected).
	until atomic.Int64
	// ejections counts ejections since the backend last served well; it
	// multiplies the ejection time.
	ejections atomic.Int32
	refs      int // configs holding it; under Registry.mu
}

// Ejected reports whether the backend is out of service at now.
func (h *Health) Ejected(now time.Time) bool { return now.UnixNano() < h.until.Load() }

// Observe records a response status (an upstream's or Envoy's own reply,
// as outlier detection counts locally originated errors by default). It
// reports whether this response ejected the backend.
func (h *Health) Observe(status int, now time.Time) bool {
	if status < 500 {
		h.failures.Store(0)
		if !h.Ejected(now) {
			h.ejections.Store(0)
		}
		return false
	}
	if h.failures.Add(1) < Consecutive5xx || h.Ejected(now) {
		return false
	}
	// One of the racing workers ejects; the others see it ejected.
	h.failures.Store(0)
	n := h.ejections.Add(1)
	d := min(time.Duration(n)*BaseEjectionTime, MaxEjectionTime)
	h.until.Store(now.Add(d).UnixNano())
	return true
}

// Registry keeps each backend's Health across configs; the filter has one
// for the life of the process. Its lock is taken when configs are built and
// dropped, never per request.
type Registry struct {
	mu       sync.Mutex
	backends map[string]*Health
}

// NewRegistry is an empty registry.
func NewRegistry() *Registry { return &Registry{backends: map[string]*Health{}} }

// Retain returns the Health of backend name, creating it, and counts one
// more config holding it.
func (r *Registry) Retain(name string) *Health {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.backends[name]
	if !ok {
		h = &Health{}
		r.backends[name] = h
	}
	h.refs++
	return h
}

// Release gives back a Retain; a backend no config holds is forgotten.
func (r *Registry) Release(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.backends[name]
	if !ok {
		return
	}
	if h.refs--; h.refs <= 0 {
		delete(r.backends, name)
	}
}
