package sim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// FaultMode is what a fault does to the requests it hits.
type FaultMode string

const (
	FaultNone FaultMode = "none" // serve normally
	FaultSlow FaultMode = "slow" // add Fault.Delay (to TTFT for inference, to the reply otherwise)
	FaultFail FaultMode = "fail" // answer 500 with a vLLM error body
	FaultHang FaultMode = "hang" // never answer, until the client gives up or the server closes
	// FaultStreamError ends a stream after Fault.AfterTokens tokens with the
	// API's streaming error event (vLLM: data: {"error": ...} then
	// data: [DONE], status already 200); a non-streaming request gets a 500.
	FaultStreamError FaultMode = "stream_error"
	// FaultReset cuts the connection as a pod that dies does: a stream
	// after Fault.AfterTokens tokens (what was sent stays sent, the stream
	// never ends), any other request before a byte of its response.
	FaultReset FaultMode = "reset"
)

// streamErrorMessage is what the stream_error fault reports.
const streamErrorMessage = "vllmsim: injected engine failure mid-stream"

// errStreamFault is the engine error the stream_error fault raises.
var errStreamFault = errors.New(streamErrorMessage)

// Fault is the injected misbehaviour; the zero value is a healthy server.
type Fault struct {
	// Mode applies to /v1/chat/completions, /v1/completions and /v1/embeddings.
	Mode FaultMode
	// Delay is the extra time for FaultSlow.
	Delay time.Duration
	// Rate in (0,1] is the fraction of inference requests Mode hits; 0 means all.
	Rate float64
	// AfterTokens is when FaultStreamError or FaultReset strikes in a
	// stream; 0 means after 1 token.
	AfterTokens int
	// Metrics and Health apply to /metrics and /health, so scrape staleness and
	// health-check paths can be provoked separately from inference.
	Metrics FaultMode
	Health  FaultMode
}

// faultWire is Fault as JSON: {"mode":"slow","delay":"250ms","rate":0.5,"metrics":"hang"}.
type faultWire struct {
	Mode    FaultMode `json:"mode"`
	Delay   string    `json:"delay,omitempty"`
	Rate    float64   `json:"rate,omitempty"`
	After   int       `json:"after_tokens,omitempty"`
	Metrics FaultMode `json:"metrics,omitempty"`
	Health  FaultMode `json:"health,omitempty"`
}

func validMode(m FaultMode) bool {
	switch m {
	case "", FaultNone, FaultSlow, FaultFail, FaultHang, FaultStreamError, FaultReset:
		return true
	}
	return false
}

func (f Fault) validate() error {
	for _, m := range []FaultMode{f.Mode, f.Metrics, f.Health} {
		if !validMode(m) {
			return fmt.Errorf("unknown fault mode %q (want none, slow, fail, hang, stream_error or reset)", m)
		}
	}
	if f.Delay < 0 {
		return fmt.Errorf("delay must not be negative, got %v", f.Delay)
	}
	if f.Rate < 0 || f.Rate > 1 {
		return fmt.Errorf("rate must be in [0,1], got %v", f.Rate)
	}
	if f.AfterTokens < 0 {
		return fmt.Errorf("after_tokens must not be negative, got %d", f.AfterTokens)
	}
	for _, m := range []FaultMode{f.Metrics, f.Health} {
		if m == FaultStreamError || m == FaultReset {
			return fmt.Errorf("%s applies to inference only", m)
		}
	}
	return nil
}

func active(m FaultMode) bool { return m != "" && m != FaultNone }

// faultEffect is what the injected fault does to a request that is served.
type faultEffect struct {
	extraDelay time.Duration // added to the time to first token
	failAfter  int           // > 0: end the stream with an error after this many tokens
	resetAfter int           // > 0: cut the connection after this many tokens (FaultReset)
}

// inferenceFault applies the injected fault and --fail-rate to an inference request.
// handled means the response has been written (or the request hung until it ended).
func (s *Server) inferenceFault(w http.ResponseWriter, r *http.Request) (fe faultEffect, handled bool) {
	f := s.Fault()
	if active(f.Mode) && (f.Rate == 0 || s.chance(f.Rate)) {
		switch f.Mode {
		case FaultFail:
			writeError(w, http.StatusInternalServerError, "vllmsim: injected failure")
			return fe, true
		case FaultHang:
			s.hang(r.Context())
			return fe, true
		case FaultSlow:
			fe.extraDelay = f.Delay
		case FaultStreamError:
			fe.failAfter = max(f.AfterTokens, 1)
		case FaultReset:
			fe.resetAfter = max(f.AfterTokens, 1)
		}
	}
	if s.opts.FailRate > 0 && s.chance(s.opts.FailRate) {
		writeError(w, http.StatusInternalServerError, "vllmsim: random failure (--fail-rate)")
		return fe, true
	}
	return fe, false
}

// resetConnection cuts the request's connection: net/http closes it,
// without ending a chunked body, when a handler panics with
// http.ErrAbortHandler (and logs nothing).
func resetConnection() { panic(http.ErrAbortHandler) }

// endpointFault applies mode to /metrics or /health; true means the response is done.
func (s *Server) endpointFault(w http.ResponseWriter, r *http.Request, mode FaultMode) bool {
	switch mode {
	case FaultFail:
		writeError(w, http.StatusInternalServerError, "vllmsim: injected failure")
		return true
	case FaultHang:
		s.hang(r.Context())
		return true
	case FaultSlow:
		t := time.NewTimer(s.Fault().Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return true
		case <-s.closing:
			return true
		}
	}
	return false
}

// hang blocks until the request or the server ends.
func (s *Server) hang(ctx context.Context) {
	s.hanging.Add(1)
	defer s.hanging.Add(-1)
	select {
	case <-ctx.Done():
	case <-s.closing:
	}
}

func (s *Server) handleGetFault(w http.ResponseWriter, _ *http.Request) {
	f := s.Fault()
	fw := faultWire{Mode: f.Mode, Rate: f.Rate, After: f.AfterTokens, Metrics: f.Metrics, Health: f.Health}
	if fw.Mode == "" {
		fw.Mode = FaultNone
	}
	if f.Delay > 0 {
		fw.Delay = f.Delay.String()
	}
	writeJSON(w, http.StatusOK, fw)
}

func (s *Server) handleSetFault(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var fw faultWire
	if err := decodeBody(body, &fw); err != nil {
		replyError(w, err)
		return
	}
	f := Fault{Mode: fw.Mode, Rate: fw.Rate, AfterTokens: fw.After, Metrics: fw.Metrics, Health: fw.Health}
	if fw.Delay != "" {
		d, err := time.ParseDuration(fw.Delay)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("delay: %v", err))
			return
		}
		f.Delay = d
	}
	if err := s.SetFault(f); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.handleGetFault(w, r)
}

func (s *Server) handleGetOverride(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.metrics.currentOverride())
}

// handleSetOverride replaces the whole override with the posted object; {} or
// {"clear":true} (or DELETE) returns every metric to the engine's own value.
func (s *Server) handleSetOverride(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var in struct {
		MetricsOverride
		Clear bool `json:"clear"`
	}
	if err := decodeBody(body, &in); err != nil {
		replyError(w, err)
		return
	}
	if in.Clear {
		in.MetricsOverride = MetricsOverride{}
	}
	if err := in.MetricsOverride.validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.SetMetricsOverride(in.MetricsOverride)
	writeJSON(w, http.StatusOK, in.MetricsOverride)
}

func (s *Server) handleClearOverride(w http.ResponseWriter, _ *http.Request) {
	s.SetMetricsOverride(MetricsOverride{})
	writeJSON(w, http.StatusOK, MetricsOverride{})
}

// validate rejects values no real vLLM could report.
func (o MetricsOverride) validate() error {
	for _, c := range []struct {
		name string
		v    *int
	}{{"num_requests_waiting", o.NumRequestsWaiting}, {"num_requests_running", o.NumRequestsRunning}, {"max_lora", o.MaxLoRA}} {
		if c.v != nil && *c.v < 0 {
			return fmt.Errorf("%s must not be negative, got %d", c.name, *c.v)
		}
	}
	if o.KVCacheUsagePerc != nil && (*o.KVCacheUsagePerc < 0 || *o.KVCacheUsagePerc > 1) {
		return fmt.Errorf("kv_cache_usage_perc must be in [0,1], got %v", *o.KVCacheUsagePerc)
	}
	return nil
}
