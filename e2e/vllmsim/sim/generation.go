package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// fillerWords is the deterministic output: token i is fillerWords[i % len]. Real text
// is not the point; its length and pacing are.
var fillerWords = []string{
	"The", " simulated", " model", " answers", " with", " filler", " words", " until",
	" its", " token", " budget", " runs", " out", ".",
}

func fillerToken(i int) string { return fillerWords[i%len(fillerWords)] }

// genJob is a parsed chat or completions request, ready for the engine.
type genJob struct {
	chat            bool
	model           string // the served name the client asked for, echoed back
	req             seqRequest
	stops           []string
	stream          bool
	includeUsage    bool
	continuousUsage bool
}

// contextLengthError is vLLM's 400 for a request that cannot fit: here the whole KV
// cache is the context window.
func (s *Server) contextLengthError(job genJob) error {
	limit := s.opts.KVBlocks * s.opts.BlockSize
	if job.req.prompt+job.req.maxTokens <= limit {
		return nil
	}
	return badf("This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
		limit, job.req.prompt+job.req.maxTokens, job.req.prompt, job.req.maxTokens)
}

// generate runs job through the engine and writes the (streamed or whole) response.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, job genJob) {
	if err := s.contextLengthError(job); err != nil {
		replyError(w, err)
		return
	}
	extra, handled := s.inferenceFault(w, r)
	if handled {
		return
	}
	job.req.extraDelay = extra

	out := newGenOutput(w, job)
	if job.stream {
		// Like vLLM's StreamingResponse, headers go out before the request is scheduled.
		out.startStream()
	}
	ctx := r.Context()
	sq, err := s.engine.admit(ctx, job.req)
	if err != nil {
		out.fail(err)
		return
	}
	reason := finishAbort
	defer func() { sq.finish(reason) }()

	var text strings.Builder
	emitted := 0
	var stopReason *string
	for reason == finishAbort {
		ok, err := sq.next(ctx)
		if err != nil {
			out.fail(err)
			return
		}
		if !ok {
			break
		}
		text.WriteString(fillerToken(sq.generated - 1))
		full := text.String()
		end := len(full)
		for _, stop := range job.stops {
			if i := strings.Index(full, stop); stop != "" && i >= 0 && i < end {
				end, stopReason = i, &stop
			}
		}
		switch {
		case stopReason != nil:
			reason = finishStop
			text.Reset()
			text.WriteString(full[:end]) // vLLM leaves the stop string out of the output
		case sq.generated >= job.req.maxTokens:
			reason = finishLength
		}
		if job.stream {
			delta := full[min(emitted, end):max(emitted, end)]
			emitted = max(emitted, end)
			out.chunk(delta, reason, stopReason, sq)
		}
	}
	usage := newUsage(job.req.prompt, sq.generated, sq.cachedTokens)
	if job.stream {
		out.finishStream(usage)
	} else {
		out.whole(text.String(), reason, stopReason, usage)
	}
	s.opts.Logger.Debug("request done", "api", out.object, "model", job.model,
		"prompt_tokens", usage.PromptTokens, "cached_tokens", sq.cachedTokens,
		"completion_tokens", usage.CompletionTokens, "finish_reason", reason,
		"queue", sq.admitted.Sub(sq.arrival), "prefill", sq.prefill)
}

// genOutput writes one response in the chat or completions shape.
type genOutput struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	job      genJob
	id       string
	object   string
	created  int64
	started  bool // SSE headers sent
	sentRole bool
}

func newGenOutput(w http.ResponseWriter, job genJob) *genOutput {
	o := &genOutput{w: w, rc: http.NewResponseController(w), job: job, created: time.Now().Unix()}
	if job.chat {
		o.id, o.object = "chatcmpl-"+newID(), "chat.completion"
	} else {
		o.id, o.object = "cmpl-"+newID(), "text_completion"
	}
	return o
}

func (o *genOutput) startStream() {
	h := o.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	o.w.WriteHeader(http.StatusOK)
	o.started = true
	_ = o.rc.Flush() // a failed flush means the client left; the engine sees ctx end
}

// event writes one SSE event "data: <json>\n\n" and flushes it.
func (o *genOutput) event(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"error":{"message":%q}}`, err.Error()))
	}
	_, _ = fmt.Fprintf(o.w, "data: %s\n\n", b)
	_ = o.rc.Flush()
}

// fail reports an engine error: as a JSON error before streaming, as an error event
// (vLLM's create_streaming_error_response) after; a client that left gets nothing.
func (o *genOutput) fail(err error) {
	if clientGone(err) {
		return
	}
	if !o.started {
		replyError(o.w, err)
		return
	}
	o.event(newErrorResponse(errorStatus(err), err.Error()))
	_, _ = fmt.Fprint(o.w, "data: [DONE]\n\n")
	_ = o.rc.Flush()
}

func (o *genOutput) chunk(delta, reason string, stopReason *string, sq *seq) {
	var fr *string
	if reason != finishAbort {
		fr = &reason
	}
	var usage *usageInfo
	if o.job.includeUsage && o.job.continuousUsage {
		usage = newUsage(o.job.req.prompt, sq.generated, sq.cachedTokens)
	}
	if !o.job.chat {
		o.event(completionResponse{
			ID: o.id, Object: o.object, Created: o.created, Model: o.job.model, Usage: usage,
			Choices: []completionChoice{{Text: delta, FinishReason: fr, StopReason: stopReason}},
		})
		return
	}
	if !o.sentRole {
		// vLLM opens every chat stream with a role-only delta.
		empty := ""
		o.event(chatChunk{ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.job.model,
			Choices: []chatChunkChoice{{Delta: chatDelta{Role: "assistant", Content: &empty}}}})
		o.sentRole = true
	}
	o.event(chatChunk{
		ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.job.model, Usage: usage,
		Choices: []chatChunkChoice{{Delta: chatDelta{Content: &delta}, FinishReason: fr, StopReason: stopReason}},
	})
}

// finishStream sends the usage-only chunk (when asked for) and the [DONE] sentinel.
func (o *genOutput) finishStream(usage *usageInfo) {
	if o.job.includeUsage {
		if o.job.chat {
			o.event(chatChunk{ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: o.job.model,
				Choices: []chatChunkChoice{}, Usage: usage})
		} else {
			o.event(completionResponse{ID: o.id, Object: o.object, Created: o.created, Model: o.job.model,
				Choices: []completionChoice{}, Usage: usage})
		}
	}
	_, _ = fmt.Fprint(o.w, "data: [DONE]\n\n")
	_ = o.rc.Flush()
}

func (o *genOutput) whole(text, reason string, stopReason *string, usage *usageInfo) {
	if o.job.chat {
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
