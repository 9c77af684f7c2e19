package envoyfilter

import (
	"strconv"
	"sync"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/inflow-gateway/inflow/filter/genai"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/request"
	"github.com/inflow-gateway/inflow/filter/usage"
)

// genaiServers are the process's GenAI metrics listeners (filter config
// genai_metrics.address), shared by every config that names an address.
var genaiServers = genai.NewServers(genai.Default, func(msg string, args ...any) {
	api.LogWarnf("%s %v", msg, args)
})

// operations are Envoy AI Gateway's gen_ai.operation.name values.
var operations = [...]string{
	request.ChatCompletions: "chat",
	request.Completions:     "completion",
	request.Embeddings:      "embeddings",
	request.Responses:       "responses",
	request.Messages:        "messages",
}

// provider is gen_ai.provider.name: the API schema the server speaks,
// Envoy AI Gateway's names.
func provider(k request.Kind) string {
	if k == request.Messages {
		return "anthropic"
	}
	return "openai"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// recordGenAI adds the request to the GenAI metrics. error.type is the
// HTTP status of a failed response, or how a 200 body failed (error_event,
// truncated, no_usage, undecodable).
func (f *filter) recordGenAI(r *response, res *usage.Result, lat latency, now time.Time, complete bool) {
	g := genai.Request{
		Attrs: genai.Attrs{
			Operation: operations[r.kind], Provider: provider(r.kind),
			OriginalModel: r.originalModel, RequestModel: r.servedModel, ResponseModel: res.Model,
		},
		Duration:  now.Sub(r.start).Seconds(),
		Streaming: r.stream,
		HasTTFT:   lat.hasTTFT, TTFT: lat.ttft.Seconds(),
		HasTPOT: lat.hasITL, TPOT: lat.itl.Seconds(),
	}
	if g.ResponseModel == "" {
		g.ResponseModel = genai.Unknown
	}
	switch {
	case r.status == 0:
		g.ErrorType = "no_response"
	case r.status < 200 || r.status >= 300:
		g.ErrorType = strconv.Itoa(r.status)
	case res.Outcome.Failed():
		g.ErrorType = res.Outcome.String()
	}
	u := &res.Usage
	for i, t := range tokenFields {
		if u.Set.Has(t.field) {
			g.Tokens[i], g.HasTokens[i] = *t.value(u), true
		}
	}
	genai.Default.Record(&g)
}

// tokenFields lists the token types in genai's order, with their stat
// names.
var tokenFields = [...]struct {
	field usage.Fields
	stat  string
	value func(*usage.Usage) *uint64
}{
	{usage.FieldInput, "input", func(u *usage.Usage) *uint64 { return &u.Input }},
	{usage.FieldOutput, "output", func(u *usage.Usage) *uint64 { return &u.Output }},
	{usage.FieldCachedInput, "cached_input", func(u *usage.Usage) *uint64 { return &u.CachedInput }},
	{usage.FieldCacheCreationInput, "cache_creation_input", func(u *usage.Usage) *uint64 { return &u.CacheCreationInput }},
	{usage.FieldReasoning, "reasoning", func(u *usage.Usage) *uint64 { return &u.Reasoning }},
}

// tokenCounts are token totals by type; process-wide per model, so they
// survive config updates, and exported to Envoy stats in the background.
type tokenCounts [len(tokenFields)]pool.Counter

// allTokens is the gateway total; modelTokens the per-model counts.
var (
	allTokens   tokenCounts
	modelTokens sync.Map // client-facing model name -> *tokenCounts
)

// tokenTable is the counts a config adds to, built when it is parsed.
type tokenTable map[string]*tokenCounts

func newTokenTable(models []string) tokenTable {
	t := make(tokenTable, len(models))
	for _, m := range models {
		c, _ := modelTokens.LoadOrStore(m, new(tokenCounts))
		t[m] = c.(*tokenCounts)
	}
	return t
}

func (t tokenTable) add(model string, u *usage.Usage) {
	mc := t[model]
	for i, tf := range tokenFields {
		if v := *tf.value(u); v > 0 {
			allTokens[i].Add(v)
			if mc != nil {
				mc[i].Add(v)
			}
		}
	}
}
