// Package sim is a vLLM-compatible model-server simulator: it serves the OpenAI API and
// the Prometheus metrics of `vllm serve` from a small but real engine model, without a
// GPU, so Inflow's scheduler, e2e tests and benchmarks can run against many "pods" on
// one machine.
//
// # Use from Go
//
//	srv, err := sim.Start(ctx, sim.Options{Model: "llama", LoRAs: []string{"sql"}})
//	defer srv.Close()
//	client := openai.NewClient(option.WithBaseURL(srv.URL() + "/v1"))
//
//	c, err := sim.StartCluster(ctx, 4, sim.Options{Model: "llama", Listen: "127.0.0.1:9000"})
//	// c.Addrs() == 127.0.0.1:9000 .. 127.0.0.1:9003; Listen port 0 gives ephemeral ports.
//
// # HTTP API
//
// POST /v1/chat/completions, POST /v1/completions (stream or not; with stream_options
// {"include_usage":true} a final chunk with empty choices carries usage, then
// "data: [DONE]"; continuous_usage_stats adds usage to every chunk), POST
// /v1/embeddings, POST /v1/responses (the Responses API: usage in the response object
// and in the final response.completed / response.incomplete event), POST /v1/messages
// (Anthropic: input usage in message_start, output in message_delta; input_tokens
// excludes cache_read_input_tokens), GET /v1/models (base model and adapters),
// GET /health, GET /metrics. Usage always includes prompt_tokens_details.cached_tokens.
//
// A non-streaming chat or completions request with the header
// endpoint-load-metrics-format: TEXT (or JSON) gets vLLM's ORCA load report in the
// response header endpoint-load-metrics, in vLLM's exact text (orca_metrics.py):
//
//	TEXT named_metrics.num_requests_waiting=2.0, named_metrics.kv_cache_usage_perc=0.25
//	JSON {"named_metrics": {"num_requests_waiting": 2.0, "kv_cache_usage_perc": 0.25}}
//
// Options.Gzip compresses responses for clients that accept gzip (flushed per event);
// Options.DeterministicIDs makes equal requests give byte-identical responses.
// Errors use vLLM's body (vllm/entrypoints/openai/engine/protocol.py ErrorResponse):
//
//	{"error":{"message":"The model `x` does not exist.","type":"NotFoundError","param":null,"code":404}}
//
// with 400 BadRequestError for bad JSON, missing messages/prompt/input, max_tokens < 1,
// stream_options without stream, or a request longer than the KV cache; 404 for a model
// that is neither the base model nor a loaded adapter. An empty model means the base
// model, as in vLLM. Generated text is deterministic filler, one word per token; the
// completion has max_tokens tokens (default MaxTokensDefault) unless a "stop" string
// appears in it (finish_reason "stop", the stop string left out) — else "length".
//
// # Engine model
//
// Prompt tokens are estimated as ceil(bytes/4) (at least 1), the estimate GIE's
// approximate prefix scorer also uses. Chat prompts are serialized as "role\ncontent\n"
// per message; a completions prompt given as token ids counts one token per id.
//
// Admission follows vLLM's scheduler: waiting requests are considered in arrival (FIFO)
// order; admission stops when MaxNumSeqs requests run or when the head request does not
// fit in the KV cache; a request for an adapter that is not active while MaxLoRAs
// adapters are active is skipped (it keeps its place, later requests may pass).
// An adapter is active while it has running requests.
//
// KV cache: the prompt is split into blocks of BlockSize tokens (BlockSize*4 bytes);
// full blocks are chain-hashed, h0 = xxhash64(model "\x00" cache_salt),
// h_i = xxhash64(block_i || LE64(h_{i-1})), the same chain GIE's prefix scorer builds,
// and live in a pool of KVBlocks blocks. Blocks used by running requests are pinned;
// unused ones stay cached and are evicted least recently used first (a prompt's tail
// before its head). A request's cached tokens are its leading cached blocks times
// BlockSize, capped at its prompt tokens. A request is admitted only if every block it
// can need (prompt + max_tokens) fits beside the blocks other running requests hold or
// have reserved, so there is no preemption; output blocks are taken as tokens fill them.
// vllm:kv_cache_usage_perc = blocks held by running requests / KVBlocks, so it returns
// to 0 when the server is idle while cached prefixes remain.
//
// # Timing model
//
// With r running requests (this one included) and N = MaxNumSeqs:
//
//	prefill   = TTFTBase + PrefillPerToken * (prompt_tokens - cached_tokens)
//	TTFT      = queue wait + prefill (+ the "slow" fault delay)
//	factor(r) = 1 + (LoadFactor-1) * (r-1)/(N-1)          (1 when N == 1)
//	token k+1 = token k + ITL * factor(r at token k)
//
// Tokens follow a schedule from the first token, so a slow reader does not slow the
// engine. The linear load factor is llm-d-inference-sim's time-factor-under-load
// (docs/latency-simulation.md): decode steps grow slower as the batch grows. Prefill
// is not scaled by it, so TTFT depends only on the queue and the prefix cache.
//
// Defaults model Llama-3-8B FP16 on one H100-80GB behind vLLM:
//
//	TTFTBase 30ms, PrefillPerToken 250us  llm-d-inference-sim docs/latency-defaults.md,
//	                                      7-8B/H100 prefill-overhead 25-40 ms and
//	                                      0.15-0.30 ms/token; 256 tokens -> 94 ms, inside the
//	                                      published 60-120 ms TTFT for 256-token prompts
//	ITL 12ms                              same table, 7-8B/H100 batch-1 ITL 10-15 ms
//	LoadFactor 2                          same source: 1.5-2.0 for latency-optimised serving
//	MaxNumSeqs 256                        vLLM get_batch_defaults, OpenAI server, < 70 GiB GPUs
//	BlockSize 16                          vLLM CacheConfig.block_size default
//	KVBlocks 31250 (500K tokens)          GIE DefaultLRUCapacityPerServer: 64 GB of KV at
//	                                      128 KB/token for Llama-3-8B on an H100
//	MaxLoRAs 1                            vLLM LoRAConfig.max_loras default
//	MaxTokensDefault 16                   vLLM CompletionRequest.max_tokens default
//
// Tests should use microsecond-scale durations (e.g. ITL 20us) and assert orderings.
//
// # Metrics
//
// GET /metrics is Prometheus text format 0.0.4 with vLLM's names, labels
// {model_name, engine="0"} on every series:
//
//	vllm:num_requests_running, vllm:num_requests_waiting     gauges
//	vllm:kv_cache_usage_perc (and the older vllm:gpu_cache_usage_perc)  gauge in [0,1]
//	vllm:prefix_cache_queries_total, vllm:prefix_cache_hits_total  counters, in tokens
//	vllm:request_success_total{finished_reason=stop|length|abort}
//	vllm:time_to_first_token_seconds, vllm:e2e_request_latency_seconds  histograms with
//	    vLLM's buckets
//	vllm:cache_config_info{block_size,num_gpu_blocks,...} 1
//	vllm:lora_requests_info{max_lora,running_lora_adapters,waiting_lora_adapters}
//	    value = unix time of the last update; adapters comma-separated; exported when
//	    adapters are loaded (or overridden). Like vLLM, earlier label sets stay with their
//	    old timestamps (up to 16): readers must take the newest series.
//
// Real vLLM does not put model_name on cache_config_info and lora_requests_info; the
// simulator adds it so every series names its model.
//
// # Admin API (fault injection and metric overrides)
//
//	GET  /admin/fault    current fault
//	POST /admin/fault    {"mode":"none|slow|fail|hang|stream_error","delay":"250ms","rate":0.5,
//	                      "after_tokens":2,
//	                      "metrics":"none|slow|fail|hang","health":"none|slow|fail|hang"}
//
// mode applies to the inference endpoints: slow adds delay to the time to first token
// (the request holds its engine slot meanwhile), fail answers 500 InternalServerError,
// hang never answers until the client disconnects or the server closes, stream_error ends a
// stream after after_tokens tokens (default 1) with the API's streaming error (vLLM's
// data: {"error": {...}} then data: [DONE], status already 200; a non-streaming request
// gets a 500). rate (default
// 1) is the fraction of inference requests hit. metrics and health apply the same modes
// to /metrics and /health (slow delays the reply by delay). POST replaces the whole
// fault; {"mode":"none"} heals. --fail-rate (Options.FailRate) fails a random fraction
// of inference requests independently of the admin fault.
//
//	GET    /admin/metrics  current overrides
//	POST   /admin/metrics  {"num_requests_waiting":12,"num_requests_running":3,
//	                        "kv_cache_usage_perc":0.9,"running_lora_adapters":["a"],
//	                        "waiting_lora_adapters":[],"max_lora":2}
//	DELETE /admin/metrics  clear (as does POST {"clear":true} or {})
//
// POST replaces the whole override set; omitted fields report the engine's own value.
// The same controls are Server.SetFault and Server.SetMetricsOverride in Go.
//
// Prompts are never logged.
package sim
