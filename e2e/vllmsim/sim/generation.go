package sim

import (
	"net/http"
	"strings"
)

// fillerWords is the deterministic output: token i is fillerWords[i % len]. Real text
// is not the point; its length and pacing are.
var fillerWords = []string{
	"The", " simulated", " model", " answers", " with", " filler", " words", " until",
	" its", " token", " budget", " runs", " out", ".",
}

func fillerToken(i int) string { return fillerWords[i%len(fillerWords)] }

// api is the response shape a generation is written in.
type api uint8

const (
	apiCompletions api = iota
	apiChat
	apiResponses
	apiMessages
)

// genJob is a parsed generation request, ready for the engine.
type genJob struct {
	api             api
	model           string // the served name the client asked for, echoed back
	req             seqRequest
	stops           []string
	stream          bool
	includeUsage    bool
	continuousUsage bool
	// loadFormat is the endpoint-load-metrics-format the request asked for.
	loadFormat string
	// failAfter > 0: the "stream_error" fault ends the stream after this
	// many tokens with vLLM's streaming error.
	failAfter int
	// resetAfter > 0: the "reset" fault cuts the connection after this
	// many tokens.
	resetAfter int
}

// usageCounts are what a response reports as usage.
type usageCounts struct{ prompt, completion, cached int }

// output writes one generation in its API's shape.
type output interface {
	// startStream sends the stream's headers (and opening events).
	startStream()
	// token streams one generated token; reason is finishAbort until the last.
	token(delta, reason string, stopReason *string, sq *seq)
	// finishStream sends the closing events.
	finishStream(u usageCounts, reason string, stopReason *string)
	// whole writes a non-streaming response.
	whole(text, reason string, stopReason *string, u usageCounts)
	// fail reports an engine error: as a JSON error before the stream
	// started, in the API's stream error shape after.
	fail(err error)
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
	f, handled := s.inferenceFault(w, r)
	if handled {
		return
	}
	job.req.extraDelay = f.extraDelay
	if f.failAfter > 0 {
		if !job.stream {
			writeError(w, http.StatusInternalServerError, streamErrorMessage)
			return
		}
		job.failAfter = f.failAfter
	}
	if f.resetAfter > 0 {
		if !job.stream {
			resetConnection()
		}
		job.resetAfter = f.resetAfter
	}
	job.loadFormat = r.Header.Get(HeaderLoadMetricsFormat)
	w, finishEncoding := s.encodeResponse(w, r)
	defer finishEncoding()

	out := s.newOutput(w, job)
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
			out.token(delta, reason, stopReason, sq)
			if job.failAfter > 0 && sq.generated >= job.failAfter && reason == finishAbort {
				out.fail(errStreamFault)
				return
			}
			if job.resetAfter > 0 && sq.generated >= job.resetAfter && reason == finishAbort {
				resetConnection()
			}
		}
	}
	u := usageCounts{prompt: job.req.prompt, completion: sq.generated, cached: sq.cachedTokens}
	if job.stream {
		out.finishStream(u, reason, stopReason)
	} else {
		// Finished before the reply so a load report shows the engine
		// without this request, as vLLM's does.
		sq.finish(reason)
		out.whole(text.String(), reason, stopReason, u)
	}
	s.opts.Logger.Debug("request done", "api", job.api, "model", job.model,
		"prompt_tokens", u.prompt, "cached_tokens", u.cached,
		"completion_tokens", u.completion, "finish_reason", reason,
		"queue", sq.admitted.Sub(sq.arrival), "prefill", sq.prefill)
}

// newOutput picks the writer of job's API.
func (s *Server) newOutput(w http.ResponseWriter, job genJob) output {
	base := newStreamWriter(w)
	id, created := s.responseID(job), s.created()
	switch job.api {
	case apiResponses:
		return &responsesOutput{streamWriter: base, job: job, id: id, created: created}
	case apiMessages:
		return &messagesOutput{streamWriter: base, job: job, id: id}
	}
	o := &openaiOutput{streamWriter: base, job: job, created: created, loadReport: s.loadReportFor(job)}
	if job.api == apiChat {
		o.id, o.object = "chatcmpl-"+id, "chat.completion"
	} else {
		o.id, o.object = "cmpl-"+id, "text_completion"
	}
	return o
}
