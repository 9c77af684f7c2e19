package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3/option"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// streamHost starts a host whose backends hold every stream after its first
// chunk until gate is closed.
func streamHost(t *testing.T) (*harness.Host, chan struct{}, []*harness.Backend) {
	gate := make(chan struct{})
	b1, b2 := startBackend(t, "b1"), startBackend(t, "b2")
	b1.Gate, b2.Gate = gate, gate
	h := startInflowHost(t, inflowConfig(0, b1, b2))
	return h, gate, []*harness.Backend{b1, b2}
}

// firstChunkWait bounds the wait for chunk 1 while the backend holds chunk 2;
// it is well below harness.gateTimeout, after which the backend gives up.
const firstChunkWait = 5 * time.Second

// nextWhileGated calls next (a stream's Next) while the backends still hold
// the rest of the stream, failing the test if it does not return in time.
func nextWhileGated(t *testing.T, next func() bool, gate chan struct{}) bool {
	t.Helper()
	res := make(chan bool, 1)
	go func() { res <- next() }()
	select {
	case ok := <-res:
		return ok
	case <-time.After(firstChunkWait):
		close(gate)
		<-res
		t.Fatalf("the first chunk did not arrive within %v while the backend held the rest: the response is buffered", firstChunkWait)
		return false
	}
}

func TestInflowChatStreamingIsIncremental(t *testing.T) {
	t.Parallel()
	h, gate, backends := streamHost(t)
	c := client(h)
	stream := c.Chat.Completions.NewStreaming(testContext(t), chatParams("llama", "hi"), option.WithHeader(testIDHeader, "s"))
	defer stream.Close()
	// The backend sends chunk 2 only after the gate opens: if the host or
	// the filter buffered the response, the first chunk would not arrive.
	if !nextWhileGated(t, stream.Next, gate) {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	if got := stream.Current().Choices[0].Delta.Content; got != harness.StreamChunks[0] {
		t.Fatalf("first chunk %q, want %q", got, harness.StreamChunks[0])
	}
	close(gate)
	text := harness.StreamChunks[0]
	for stream.Next() {
		if ch := stream.Current().Choices; len(ch) > 0 {
			text += ch[0].Delta.Content
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if want := strings.Join(harness.StreamChunks, ""); text != want {
		t.Errorf("streamed %q, want %q", text, want)
	}
	b, r := received(t, "s", backends...)
	checkRouted(t, b, r)
}

func TestInflowCompletionsStreamingIsIncremental(t *testing.T) {
	t.Parallel()
	h, gate, backends := streamHost(t)
	c := client(h)
	stream := c.Completions.NewStreaming(testContext(t), completionParams("llama", "p"), option.WithHeader(testIDHeader, "cs"))
	defer stream.Close()
	if !nextWhileGated(t, stream.Next, gate) {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	if got := stream.Current().Choices[0].Text; got != harness.StreamChunks[0] {
		t.Fatalf("first chunk %q, want %q", got, harness.StreamChunks[0])
	}
	close(gate)
	n := 1
	for stream.Next() {
		n++
	}
	if err := stream.Err(); err != nil || n != len(harness.StreamChunks) {
		t.Fatalf("stream: %d chunks, err %v", n, err)
	}
	b, r := received(t, "cs", backends...)
	checkRouted(t, b, r)
}

// A client that goes away mid-stream must not take the host down or leave it
// unable to serve: the stream is reset and the upstream request dropped.
func TestClientDisconnectMidStream(t *testing.T) {
	t.Parallel()
	h, gate, _ := streamHost(t)
	c := client(h)
	ctx, cancel := context.WithCancel(testContext(t))
	stream := c.Chat.Completions.NewStreaming(ctx, chatParams("llama", "hi"))
	if !nextWhileGated(t, stream.Next, gate) {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	cancel() // closes the client connection while the backend holds chunk 2
	stream.Close()
	close(gate)
	if _, err := c.Chat.Completions.New(testContext(t), chatParams("llama", "again")); err != nil {
		t.Fatalf("request after a client disconnect: %v", err)
	}
	// The reset stream is destroyed on the worker shortly after.
	poll.Eventually(t, "the disconnected stream reset", func() bool { return stat(t, h, "http.envoyhost.downstream_rq_reset") >= 1 })
}
