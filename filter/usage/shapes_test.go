package usage

import (
	"strings"

	"github.com/inflow-gateway/inflow/filter/request"
)

// Response bodies in the shapes the servers behind the gateway send them.
// vLLM's are as vllm/entrypoints/openai serializes them; the Responses API
// and Anthropic streams follow the providers' documented event sequences.

// usageEvent is vLLM's final chunk of a chat stream asked for usage.
const usageEvent = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"llama\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"total_tokens\":15,\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":8}}}\n\n"

func chatChunk(content string) string {
	return "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + content + "\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
}

var chatStreamNoUsage = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n" +
	chatChunk("The") + chatChunk(" sim") +
	"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ulated\"},\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}]}\n\n"

var chatStream = chatStreamNoUsage + usageEvent + "data: [DONE]\n\n"

// continuousStream has vLLM's continuous_usage_stats: usage on every chunk.
var continuousStream = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":5,\"total_tokens\":6,\"completion_tokens\":1}}\n\n" +
	"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"llama\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}],\"usage\":{\"prompt_tokens\":5,\"total_tokens\":7,\"completion_tokens\":2}}\n\n" +
	"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"llama\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"total_tokens\":7,\"completion_tokens\":2}}\n\n" +
	"data: [DONE]\n\n"

var completionsStream = "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"llama\",\"choices\":[{\"index\":0,\"text\":\"Once\",\"logprobs\":null,\"finish_reason\":null,\"stop_reason\":null}]}\n\n" +
	"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"llama\",\"choices\":[{\"index\":0,\"text\":\" upon\",\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}]}\n\n" +
	"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"llama\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"total_tokens\":6,\"completion_tokens\":2}}\n\n" +
	"data: [DONE]\n\n"

// midStreamError is vLLM's create_streaming_error_response after a chunk.
var midStreamError = chatChunk("Hi") +
	"data: {\"error\": {\"message\": \"engine died\", \"type\": \"InternalServerError\", \"param\": null, \"code\": 500}}\n\n" +
	"data: [DONE]\n\n"

var responsesStream = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1,\"status\":\"in_progress\",\"error\":null,\"model\":\"llama\",\"output\":[],\"usage\":null}}\n\n" +
	"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi \\\"there\\\"\"}\n\n" +
	"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1,\"status\":\"completed\",\"error\":null,\"model\":\"llama\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi \\\"there\\\"\"}]}],\"usage\":{\"input_tokens\":20,\"input_tokens_details\":{\"cached_tokens\":16},\"output_tokens\":7,\"output_tokens_details\":{\"reasoning_tokens\":2},\"total_tokens\":27}}}\n\n"

var responsesFailed = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"status\":\"in_progress\",\"model\":\"llama\",\"usage\":null}}\n\n" +
	"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"},\"model\":\"llama\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1,\"total_tokens\":10}}}\n\n"

var anthropicStream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\n\n" +
	"event: ping\ndata: {\"type\": \"ping\"}\n\n" +
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n" +
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n" +
	"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"

var anthropicError = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n" +
	"event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n"

const chatJSON = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"llama","choices":[{"index":0,"message":{"role":"assistant","content":"{\"usage\": \"not this\"}","tool_calls":[]},"logprobs":null,"finish_reason":"stop","stop_reason":null}],"usage":{"prompt_tokens":11,"total_tokens":20,"completion_tokens":9,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":3}}}`

const completionsJSON = `{"id":"cmpl-1","object":"text_completion","created":1,"model":"llama","choices":[{"index":0,"text":"x","logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":{"prompt_tokens":3,"total_tokens":4,"completion_tokens":1,"prompt_tokens_details":null}}`

const embeddingsJSON = `{"id":"embd-1","object":"list","created":1,"model":"e5","data":[{"index":0,"object":"embedding","embedding":[0.1,-0.2,3e-5]}],"usage":{"prompt_tokens":7,"total_tokens":7,"completion_tokens":0,"prompt_tokens_details":null}}`

const responsesJSON = `{"id":"resp_1","object":"response","created_at":1,"status":"completed","error":null,"model":"llama","output":[{"type":"message","content":[{"type":"output_text","text":"hi"}]}],"usage":{"input_tokens":30,"input_tokens_details":{"cached_tokens":0},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":35}}`

const messagesJSON = `{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":100,"cache_creation_input_tokens":20,"cache_read_input_tokens":50,"output_tokens":8}}`

// shape is one response and what accounting it must give.
type shape struct {
	name    string
	kind    request.Kind
	format  Format
	body    string
	want    Usage
	outcome Outcome
	model   string
}

func u(in, out, total, cached, creation, reasoning uint64, set Fields) Usage {
	return Usage{Input: in, Output: out, Total: total, CachedInput: cached, CacheCreationInput: creation, Reasoning: reasoning, Set: set}
}

const (
	ioT  = FieldInput | FieldOutput | FieldTotal
	ioTC = ioT | FieldCachedInput
)

var shapes = []shape{
	{"chat stream with usage", request.ChatCompletions, SSE, chatStream, u(12, 3, 15, 8, 0, 0, ioTC), Complete, "llama"},
	{"chat stream without usage", request.ChatCompletions, SSE, chatStreamNoUsage + "data: [DONE]\n\n", Usage{}, NoUsage, "llama"},
	{"chat stream cut before [DONE]", request.ChatCompletions, SSE, chatStreamNoUsage, Usage{}, Truncated, "llama"},
	{"chat stream, data: without space", request.ChatCompletions, SSE, strings.ReplaceAll(chatStream, "data: ", "data:"), u(12, 3, 15, 8, 0, 0, ioTC), Complete, "llama"},
	{"chat stream, CRLF", request.ChatCompletions, SSE, strings.ReplaceAll(chatStream, "\n", "\r\n"), u(12, 3, 15, 8, 0, 0, ioTC), Complete, "llama"},
	{"chat stream, CR", request.ChatCompletions, SSE, strings.ReplaceAll(chatStream, "\n", "\r"), u(12, 3, 15, 8, 0, 0, ioTC), Complete, "llama"},
	{"chat stream, BOM, comments, multi-line data", request.ChatCompletions, SSE,
		bom + ": keep-alive\n\n" + chatChunk("x") + "data: {\"id\":\"c\",\"choices\":[],\n" + "data: \"usage\":{\"prompt_tokens\":2,\n" + "data: \"completion_tokens\":1}}\n\n" + "data: [DONE]\n\n",
		u(2, 1, 3, 0, 0, 0, ioT), Complete, "llama"},
	{"chat stream, continuous usage", request.ChatCompletions, SSE, continuousStream, u(5, 2, 7, 0, 0, 0, ioT), Complete, "llama"},
	{"chat stream, mid-stream error", request.ChatCompletions, SSE, midStreamError, Usage{}, ErrorEvent, "llama"},
	{"chat stream, error after continuous usage", request.ChatCompletions, SSE, continuousStream[:strings.Index(continuousStream, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"llama\",\"choices\":[]")] + "event: error\ndata: {\"message\":\"x\"}\n\n", u(5, 2, 7, 0, 0, 0, ioT), ErrorEvent, "llama"},
	{"completions stream", request.Completions, SSE, completionsStream, u(4, 2, 6, 0, 0, 0, ioT), Complete, "llama"},
	{"responses stream", request.Responses, SSE, responsesStream, u(20, 7, 27, 16, 0, 2, ioTC|FieldReasoning), Complete, "llama"},
	{"responses stream failed", request.Responses, SSE, responsesFailed, u(9, 1, 10, 0, 0, 0, ioT), ErrorEvent, "llama"},
	{"responses stream cut off", request.Responses, SSE, responsesStream[:strings.Index(responsesStream, "event: response.completed")], Usage{}, Truncated, "llama"},
	{"anthropic stream", request.Messages, SSE, anthropicStream, u(38, 15, 53, 10, 3, 0, ioTC|FieldCacheCreationInput), Complete, "claude-x"},
	{"anthropic stream error", request.Messages, SSE, anthropicError, u(25, 1, 26, 0, 0, 0, ioT), ErrorEvent, "claude-x"},
	{"anthropic stream cut after start", request.Messages, SSE, anthropicStream[:strings.Index(anthropicStream, "event: ping")], u(38, 1, 39, 10, 3, 0, ioTC|FieldCacheCreationInput), Truncated, "claude-x"},
	{"chat JSON", request.ChatCompletions, JSON, chatJSON, u(11, 9, 20, 4, 0, 3, ioTC|FieldReasoning), Complete, "llama"},
	{"chat JSON, pretty", request.ChatCompletions, JSON, "{\n  \"model\" : \"llama\",\n  \"usage\" : {\n    \"prompt_tokens\" : 1 ,\n    \"completion_tokens\" : 2\n  }\n}\n", u(1, 2, 3, 0, 0, 0, ioT), Complete, "llama"},
	{"chat JSON cut off", request.ChatCompletions, JSON, chatJSON[:len(chatJSON)-40], Usage{}, Truncated, "llama"},
	{"completions JSON", request.Completions, JSON, completionsJSON, u(3, 1, 4, 0, 0, 0, ioT), Complete, "llama"},
	{"embeddings JSON", request.Embeddings, JSON, embeddingsJSON, u(7, 0, 7, 0, 0, 0, FieldInput|FieldTotal), Complete, "e5"},
	{"responses JSON", request.Responses, JSON, responsesJSON, u(30, 5, 35, 0, 0, 0, ioTC|FieldReasoning), Complete, "llama"},
	{"messages JSON", request.Messages, JSON, messagesJSON, u(170, 8, 178, 50, 20, 0, ioTC|FieldCacheCreationInput), Complete, "claude-x"},
	{"JSON without usage", request.ChatCompletions, JSON, `{"model":"llama","choices":[]}`, Usage{}, NoUsage, "llama"},
	{"JSON with escaped model", request.ChatCompletions, JSON, `{"model":"ll\u0061ma\/v1 \ud83d\ude00","usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`, u(1, 1, 2, 0, 0, 0, ioT), Complete, "llama/v1 😀"},
	{"JSON error object in a 200", request.ChatCompletions, JSON, `{"error":{"message":"x","code":500}}`, Usage{}, ErrorEvent, ""},
}
