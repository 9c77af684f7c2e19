package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/filter/protocol"
)

// AdapterModel is the client-facing model that is rewritten to LoRA
// adapters, or "" if there is none.
func (c *Config) AdapterModel() string {
	for _, m := range c.Spec.Models {
		if m.Pool == c.Pool && len(m.Rewrite) > 0 {
			return m.Name
		}
	}
	return ""
}

// Client returns an OpenAI client for the stack's proxy listener.
func (s *Stack) Client() openai.Client {
	return openai.NewClient(
		option.WithBaseURL(s.Host.URL("/v1/")),
		option.WithAPIKey("demo"), // the demo needs none; the client insists on one
		option.WithMaxRetries(0),  // a retry would hide a failed request
	)
}

// smokeCheck is one request through the proxy and what it must return.
type smokeCheck struct {
	name string
	// inference says whether the request reaches a model server (so one
	// more request finishes on a simulator).
	inference bool
	run       func(ctx context.Context, s *Stack, c openai.Client) error
}

var smokeChecks = []smokeCheck{
	{name: "GET /v1/models lists every configured model", run: checkModels},
	{name: "chat completion of the base model", inference: true, run: checkChat},
	{name: "streamed completion with usage", inference: true, run: checkStream},
	{name: "chat completion of the LoRA model, rewritten to an adapter", inference: true, run: checkLoRA},
	{name: "unknown model gets an OpenAI-shaped 404", run: checkUnknown},
}

// Smoke sends the demo requests through the stack, checking each answer,
// the filter's stats and that the simulators served the inference requests.
// It reports one line per check to w and returns every failure.
func Smoke(ctx context.Context, s *Stack, w io.Writer) error {
	c := s.Client()
	before := s.finished()
	var errs []error
	inference := 0
	for _, chk := range smokeChecks {
		err := chk.run(ctx, s, c)
		report(w, chk.name, err)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", chk.name, err))
		}
		if chk.inference {
			inference++
		}
	}
	err := checkStats(ctx, s)
	report(w, "admin /stats: the filter handled, rewrote and rejected requests", err)
	errs = append(errs, err)
	served := s.finished() - before
	if served != uint64(inference) {
		err = fmt.Errorf("simulators finished %d requests, want %d", served, inference)
	} else {
		err = nil
	}
	report(w, "the simulators served every inference request", err)
	errs = append(errs, err)
	return errors.Join(errs...)
}

func report(w io.Writer, name string, err error) {
	if err != nil {
		fmt.Fprintf(w, "FAIL %s: %v\n", name, err)
		return
	}
	fmt.Fprintf(w, "ok   %s\n", name)
}

// finished is how many requests all simulators have completed.
func (s *Stack) finished() uint64 {
	var n uint64
	for _, srv := range s.Sims.Servers {
		for _, v := range srv.Stats().Finished {
			n += v
		}
	}
	return n
}

func checkModels(ctx context.Context, s *Stack, c openai.Client) error {
	page, err := c.Models.List(ctx)
	if err != nil {
		return err
	}
	var got []string
	for _, m := range page.Data {
		got = append(got, m.ID)
	}
	for _, m := range s.Config.Spec.Models {
		if !slices.Contains(got, m.Name) {
			return fmt.Errorf("model %q missing from %v", m.Name, got)
		}
	}
	return nil
}

func checkChat(ctx context.Context, s *Stack, c openai.Client) error {
	resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    s.Config.Base,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello.")},
	})
	if err != nil {
		return err
	}
	if resp.Model != s.Config.Base || len(resp.Choices) == 0 || resp.Choices[0].Message.Content == "" {
		return fmt.Errorf("model %q, %d choices: want %q and a message", resp.Model, len(resp.Choices), s.Config.Base)
	}
	return nil
}

func checkStream(ctx context.Context, s *Stack, c openai.Client) error {
	stream := c.Completions.NewStreaming(ctx, openai.CompletionNewParams{
		Model:         openai.CompletionNewParamsModel(s.Config.Base),
		Prompt:        openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens:     openai.Int(8),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	defer stream.Close()
	chunks, text, usage := 0, "", int64(0)
	for stream.Next() {
		ch := stream.Current()
		chunks++
		for _, choice := range ch.Choices {
			text += choice.Text
		}
		if ch.Usage.TotalTokens > 0 {
			usage = ch.Usage.TotalTokens
		}
	}
	if err := stream.Err(); err != nil {
		return err
	}
	if chunks < 2 || text == "" || usage == 0 {
		return fmt.Errorf("%d chunks, %d bytes of text, usage %d: want several chunks, text and a usage chunk", chunks, len(text), usage)
	}
	return nil
}

func checkLoRA(ctx context.Context, s *Stack, c openai.Client) error {
	name := s.Config.AdapterModel()
	if name == "" {
		return errors.New("the config has no model rewritten to adapters")
	}
	resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    name,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("My order is late.")},
	})
	if err != nil {
		return err
	}
	// The simulator answers with the served name it received: the adapter
	// the filter rewrote the model to.
	if !slices.Contains(s.Config.Adapters, resp.Model) {
		return fmt.Errorf("served by %q, want one of the adapters %v", resp.Model, s.Config.Adapters)
	}
	return nil
}

func checkUnknown(ctx context.Context, _ *Stack, c openai.Client) error {
	_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "no-such-model",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		return fmt.Errorf("got %v, want an API error", err)
	}
	if apiErr.StatusCode != http.StatusNotFound || apiErr.Message == "" {
		return fmt.Errorf("status %d message %q, want 404 with a message", apiErr.StatusCode, apiErr.Message)
	}
	return nil
}

// checkStats proves the Inflow filter itself ran: Envoy (and the host)
// silently pass requests through an unknown plugin, so 200s alone prove
// nothing.
func checkStats(ctx context.Context, s *Stack) error {
	stats, err := s.Host.Stats(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range []string{protocol.StatRequests, protocol.StatModelRewrites, protocol.StatRejected404} {
		n, err := strconv.ParseInt(stats[name], 10, 64)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("%s = %q, want >= 1", name, stats[name]))
		}
	}
	return errors.Join(errs...)
}
