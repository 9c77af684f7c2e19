package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
	"unicode/utf16"

	"github.com/cespare/xxhash/v2"
)

// streamWriter writes server-sent events and flushes each one.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool // SSE headers sent
}

func newStreamWriter(w http.ResponseWriter) streamWriter {
	return streamWriter{w: w, rc: http.NewResponseController(w)}
}

func (o *streamWriter) startSSE() {
	h := o.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	o.w.WriteHeader(http.StatusOK)
	o.started = true
	_ = o.rc.Flush() // a failed flush means the client left; the engine sees ctx end
}

// event writes one event, "event: <name>\n" first when name is set.
func (o *streamWriter) event(name string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = fmt.Appendf(nil, `{"error":{"message":%q}}`, err.Error())
	}
	o.rawEvent(name, b)
}

func (o *streamWriter) rawEvent(name string, data []byte) {
	if name != "" {
		_, _ = fmt.Fprintf(o.w, "event: %s\n", name)
	}
	_, _ = fmt.Fprintf(o.w, "data: %s\n\n", data)
	_ = o.rc.Flush()
}

// failedEarly handles an engine error that needs no stream error event:
// the client left, or the stream has not started (then a JSON error).
func (o *streamWriter) failedEarly(err error) bool {
	if clientGone(err) {
		return true
	}
	if !o.started {
		replyError(o.w, err)
		return true
	}
	return false
}

// responseID returns the 32 hex digits of a response id (vLLM's
// random_uuid length). With DeterministicIDs the id is a hash of the
// request, so the same request gets the same bytes every time.
func (s *Server) responseID(job genJob) string {
	if !s.opts.DeterministicIDs {
		return newID()
	}
	h := xxhash.New()
	_, _ = h.WriteString(job.model)
	_, _ = h.Write(job.req.text)
	_, _ = fmt.Fprint(h, job.api, job.req.maxTokens, job.stream)
	sum := h.Sum64()
	return fmt.Sprintf("%016x%016x", sum, sum^0x9e3779b97f4a7c15)
}

// created is a response's creation time: now, or the server's start with
// DeterministicIDs.
func (s *Server) created() int64 {
	if s.opts.DeterministicIDs {
		return s.started.Unix()
	}
	return time.Now().Unix()
}

// loadReportFor returns what builds job's load report at reply time, or nil
// when the request asked for none.
func (s *Server) loadReportFor(job genJob) func() (string, bool) {
	if job.loadFormat == "" || job.stream {
		return nil
	}
	return func() (string, bool) {
		_, waiting, kv := s.metrics.gauges(s.engine.snapshot(), s.metrics.currentOverride())
		return loadReport(job.loadFormat, waiting, kv)
	}
}

// pyErrorJSON is vLLM's streaming error (create_streaming_error_response):
// json.dumps of ErrorResponse.model_dump(), with Python's separators and
// ASCII escaping.
func pyErrorJSON(status int, msg string) []byte {
	return fmt.Appendf(nil, `{"error": {"message": %s, "type": %s, "param": null, "code": %d}}`,
		pyString(msg), pyString(errorType(status)), status)
}

// pyString is a JSON string as Python's json.dumps writes it
// (ensure_ascii): non-ASCII as \uXXXX (surrogate pairs above U+FFFF), and,
// unlike Go, no escaping of <, > and &.
func pyString(s string) string {
	b := []byte{'"'}
	for _, r := range s {
		if e, ok := pyEscapes[r]; ok {
			b = append(b, '\\', e)
			continue
		}
		switch {
		case r < 0x20 || r > 0x7e && r < 0x10000:
			b = fmt.Appendf(b, `\u%04x`, r)
		case r >= 0x10000:
			hi, lo := utf16.EncodeRune(r)
			b = fmt.Appendf(b, `\u%04x\u%04x`, hi, lo)
		default:
			b = append(b, byte(r))
		}
	}
	return string(append(b, '"'))
}

// pyEscapes are the two-character escapes json.dumps writes.
var pyEscapes = map[rune]byte{'"': '"', '\\': '\\', '\n': 'n', '\r': 'r', '\t': 't', '\b': 'b', '\f': 'f'}

// openaiOutput writes chat completions and completions.
type openaiOutput struct {
	streamWriter
	job        genJob
	id, object string
	created    int64
	sentRole   bool
	loadReport func() (string, bool)
}

func (o *openaiOutput) startStream() { o.startSSE() }

func (o *openaiOutput) fail(err error) {
	if o.failedEarly(err) {
		return
	}
	o.rawEvent("", pyErrorJSON(errorStatus(err), err.Error()))
	_, _ = fmt.Fprint(o.w, "data: [DONE]\n\n")
	_ = o.rc.Flush()
}

func (o *openaiOutput) token(delta, reason string, stopReason *string, sq *seq) {
	var fr *string
	if reason != finishAbort {
		fr = &reason
	}
	var usage *usageInfo
	if o.job.includeUsage && o.job.continuousUsage {
		usage = newUsage(o.job.req.prompt, sq.generated, sq.cachedTokens)
	}
	if o.job.api != apiChat {
		o.event("", completionResponse{
			ID: o.id, Object: o.object, Created: o.created, Model: o.job.model, Usage: usage,
			Choices: []completionChoice{{Text: delta, FinishReason: fr, StopReason: stopReason}},
		})
		return
	}
	if !o.sentRole {
		// vLLM opens every chat stream with a role-only delta.
		empty := ""
		o.event("", chatChunk{ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.job.model,
			Choices: []chatChunkChoice{{Delta: chatDelta{Role: "assistant", Content: &empty}}}})
		o.sentRole = true
	}
	o.event("", chatChunk{
		ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.job.model, Usage: usage,
		Choices: []chatChunkChoice{{Delta: chatDelta{Content: &delta}, FinishReason: fr, StopReason: stopReason}},
	})
}

// finishStream sends the usage-only chunk (when asked for) and the [DONE] sentinel.
func (o *openaiOutput) finishStream(u usageCounts, _ string, _ *string) {
	if o.job.includeUsage {
		usage := newUsage(u.prompt, u.completion, u.cached)
		if o.job.api == apiChat {
			o.event("", chatChunk{ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.job.model,
				Choices: []chatChunkChoice{}, Usage: usage})
		} else {
			o.event("", completionResponse{ID: o.id, Object: o.object, Created: o.created, Model: o.job.model,
				Choices: []completionChoice{}, Usage: usage})
		}
	}
	_, _ = fmt.Fprint(o.w, "data: [DONE]\n\n")
	_ = o.rc.Flush()
}

func (o *openaiOutput) whole(text, reason string, stopReason *string, u usageCounts) {
	if o.loadReport != nil {
		if v, ok := o.loadReport(); ok {
			o.w.Header().Set(HeaderLoadMetrics, v)
		}
	}
	usage := newUsage(u.prompt, u.completion, u.cached)
	if o.job.api == apiChat {
		writeJSON(o.w, http.StatusOK, chatResponse{
			ID: o.id, Object: o.object, Created: o.created, Model: o.job.model, Usage: usage,
			Choices: []chatChoice{{
				Message:      chatResponseMessage{Role: "assistant", Content: text, ToolCalls: []any{}},
				FinishReason: reason, StopReason: stopReason,
			}},
		})
		return
	}
	writeJSON(o.w, http.StatusOK, completionResponse{
		ID: o.id, Object: o.object, Created: o.created, Model: o.job.model, Usage: usage,
		Choices: []completionChoice{{Text: text, FinishReason: &reason, StopReason: stopReason}},
	})
}
