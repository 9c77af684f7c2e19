package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
)

// Workload shape. Real chat traffic to a shared deployment: a few
// applications, each with a long system prompt, many multi-turn
// conversations, and two LoRA adapters beside the base model.
const (
	systemPrompts    = 4
	systemPromptSize = 6000 // bytes, ~1500 tokens
	userTurnSize     = 400
	assistantSize    = 200
	maxTurns         = 6
	newConvShare     = 0.35 // of arrivals that start a conversation when one could continue
)

var adapterMix = []struct {
	model string
	share float64
}{{baseModel, 0.6}, {"sql-lora", 0.2}, {"tweet-lora", 0.2}}

const baseModel = "llama"

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type conversation struct {
	model    string
	messages []message
	turns    int
}

// workload hands out the next request: a new conversation or the next turn
// of one that is not waiting for an answer. Seeded, so every policy sees
// the same stream of choices.
type workload struct {
	mu      sync.Mutex
	r       *rand.Rand
	systems []string
	idle    []*conversation // ready for their next turn
	nextID  int
	stream  bool // requests stream (the default)
}

func newWorkload(seed uint64) *workload {
	w := &workload{r: rand.New(rand.NewPCG(seed, seed^0x5eed)), stream: true}
	for i := range systemPrompts {
		w.systems = append(w.systems, filler(w.r, fmt.Sprintf("You are assistant %d of the Inflow benchmark. ", i), systemPromptSize))
	}
	return w
}

// next returns a conversation with a new user turn appended, the request
// body for it and the raw messages array inside the body (what the filter
// hands the scheduler). The conversation is checked out until done.
func (w *workload) next() (c *conversation, body, messages []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.idle); n > 0 && w.r.Float64() >= newConvShare {
		i := w.r.IntN(n)
		c = w.idle[i]
		w.idle[i] = w.idle[n-1]
		w.idle = w.idle[:n-1]
	} else {
		c = &conversation{model: w.pickModel()}
		c.messages = append(c.messages, message{"system", w.systems[w.r.IntN(len(w.systems))]})
	}
	w.nextID++
	c.messages = append(c.messages, message{"user", filler(w.r, fmt.Sprintf("Question %d. ", w.nextID), userTurnSize)})
	c.turns++
	messages, err := json.Marshal(c.messages)
	if err != nil {
		panic(err) // plain strings always marshal
	}
	body = fmt.Appendf(nil, `{"model":%q,"stream":%t,"max_tokens":%d,"messages":%s}`, c.model, w.stream, maxTokens, messages)
	return c, body, messages
}

// done returns c to the pool of conversations, with the assistant's answer,
// unless it has had its turns.
func (w *workload) done(c *conversation) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.turns >= maxTurns {
		return
	}
	c.messages = append(c.messages, message{"assistant", filler(w.r, "Answer. ", assistantSize)})
	w.idle = append(w.idle, c)
}

func (w *workload) pickModel() string {
	x := w.r.Float64()
	for _, m := range adapterMix {
		if x < m.share {
			return m.model
		}
		x -= m.share
	}
	return baseModel
}

var words = strings.Fields("the of and a to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part")

func filler(r *rand.Rand, head string, size int) string {
	var b strings.Builder
	b.WriteString(head)
	for b.Len() < size {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()
}
