package admin

import (
	"bytes"
	"log/slog"
	"net/http"
	"sync/atomic"
)

// Handler serves:
//
//	/metrics  Prometheus text
//	/healthz  200 while the process runs (liveness)
//	/readyz   200 once the first snapshot is served, else 503 (readiness)
type Handler struct {
	Metrics *Metrics
	Log     *slog.Logger
	ready   atomic.Bool
	mux     *http.ServeMux
}

// NewHandler builds the admin endpoints around m.
func NewHandler(m *Metrics, log *slog.Logger) *Handler {
	h := &Handler{Metrics: m, Log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /metrics", h.metrics)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { h.text(w, http.StatusOK, "ok\n") })
	h.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if h.ready.Load() {
			h.text(w, http.StatusOK, "ready\n")
			return
		}
		h.text(w, http.StatusServiceUnavailable, "no snapshot yet\n")
	})
	return h
}

// SetReady marks the control plane ready: a snapshot is being served.
func (h *Handler) SetReady() { h.ready.Store(true) }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) metrics(w http.ResponseWriter, _ *http.Request) {
	var b bytes.Buffer
	if err := h.Metrics.WriteText(&b); err != nil {
		h.Log.Error("admin: render metrics", "err", err)
		http.Error(w, "metrics unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if _, err := w.Write(b.Bytes()); err != nil {
		h.Log.Debug("admin: write metrics", "err", err)
	}
}

func (h *Handler) text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	if _, err := w.Write([]byte(body)); err != nil {
		h.Log.Debug("admin: write response", "err", err)
	}
}
