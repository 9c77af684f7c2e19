package sim

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func newClient(s *Server) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(s.URL()+"/v1"),
		option.WithAPIKey("unused"),
		option.WithMaxRetries(0), // a retry would hide the status a test asserts
	)
}

// TestOpenAIClientStreaming drives the simulator with the official Go client: every
// chunk must decode, share one id, carry the text, and a final chunk the usage.
func TestOpenAIClientStreaming(t *testing.T) {
	o := fastOptions()
	o.LoRAs = []string{"sql"}
	s := startServer(t, o)
	client := newClient(s)
	prompt := strings.Repeat("Tell me about simulated servers. ", 8)

	for _, model := range []string{"m", "sql"} {
		t.Run(model, func(t *testing.T) {
			stream := client.Chat.Completions.NewStreaming(testCtx(t), openai.ChatCompletionNewParams{
				Model:         model,
				Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
				MaxTokens:     openai.Int(6),
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			})
			var (
				acc      openai.ChatCompletionAccumulator
				ids      = map[string]bool{}
				text     strings.Builder
				finish   string
				usage    *openai.CompletionUsage
				chunks   int
				afterUse int
			)
			for stream.Next() {
				c := stream.Current()
				chunks++
				acc.AddChunk(c)
				ids[c.ID] = true
				if c.Object != "chat.completion.chunk" || c.Model != model {
					t.Errorf("chunk object %q model %q", c.Object, c.Model)
				}
				if usage != nil {
					afterUse++
				}
				if c.JSON.Usage.Valid() && len(c.Choices) == 0 {
					u := c.Usage
					usage = &u
					continue
				}
				if len(c.Choices) != 1 {
					t.Fatalf("content chunk with %d choices", len(c.Choices))
				}
				text.WriteString(c.Choices[0].Delta.Content)
				if fr := c.Choices[0].FinishReason; fr != "" {
					finish = fr
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if len(ids) != 1 {
				t.Errorf("chunks carry %d different ids", len(ids))
			}
			if chunks != 8 { // role chunk, 6 tokens, usage chunk
				t.Errorf("got %d chunks, want 8", chunks)
			}
			if text.String() != "The simulated model answers with filler" || finish != "length" {
				t.Errorf("text %q finish %q", text.String(), finish)
			}
			if usage == nil {
				t.Fatal("no final usage chunk")
			}
			if afterUse != 0 {
				t.Errorf("%d chunks after the usage chunk", afterUse)
			}
			wantPrompt := int64(estimateTokens(len("user\n" + prompt + "\n")))
			if usage.PromptTokens != wantPrompt || usage.CompletionTokens != 6 || usage.TotalTokens != wantPrompt+6 {
				t.Errorf("usage = %+v, want prompt %d completion 6", usage, wantPrompt)
			}
			if !usage.JSON.PromptTokensDetails.Valid() {
				t.Error("usage lacks prompt_tokens_details")
			}
			if got := acc.Choices[0].Message.Content; got != text.String() {
				t.Errorf("accumulated content %q", got)
			}
		})
	}

	// The same prompt again hits the prefix cache, and the client sees it.
	resp, err := client.Chat.Completions.New(testCtx(t), openai.ChatCompletionNewParams{
		Model:     "m",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		MaxTokens: openai.Int(1),
	})
	if err != nil {
		t.Fatal(err)
	}
	if cached := resp.Usage.PromptTokensDetails.CachedTokens; cached == 0 || cached > resp.Usage.PromptTokens {
		t.Errorf("cached tokens = %d of %d, want some, at most all", cached, resp.Usage.PromptTokens)
	}
}

func TestOpenAIClientErrors(t *testing.T) {
	s := startServer(t, fastOptions())
	client := newClient(s)
	_, err := client.Completions.New(testCtx(t), openai.CompletionNewParams{
		Model:  "missing",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hi")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want *openai.Error", err)
	}
	if apiErr.StatusCode != http.StatusNotFound || apiErr.Type != "NotFoundError" || !strings.Contains(apiErr.Message, "does not exist") {
		t.Errorf("error = %d %q %q", apiErr.StatusCode, apiErr.Type, apiErr.Message)
	}
}
