package sim

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Defaults for Options. Each says what part of vLLM (or of the published measurements of
// it) it stands for; see the package comment for the timing model they feed.
const (
	// DefaultListen binds an ephemeral loopback port: tests and benchmarks never collide.
	DefaultListen = "127.0.0.1:0"
	// DefaultMaxLoRAs is vLLM's LoRAConfig.max_loras default.
	DefaultMaxLoRAs = 1
	// DefaultMaxNumSeqs is vLLM's max_num_seqs for the OpenAI server on GPUs under 70 GiB
	// (engine/arg_utils.py get_batch_defaults; H100-class GPUs get 1024).
	DefaultMaxNumSeqs = 256
	// DefaultKVBlocks is 500K tokens of KV cache in blocks of 16: Llama-3-8B on an H100 80GB,
	// the sizing GIE's prefix-cache plugin assumes (DefaultLRUCapacityPerServer = 31250).
	DefaultKVBlocks = 31250
	// DefaultBlockSize is vLLM's CacheConfig.block_size default on CUDA.
	DefaultBlockSize = 16
	// DefaultTTFTBase is the fixed per-prefill cost (scheduling, kernel launches) for a
	// 7-8B model: llm-d-inference-sim docs/latency-defaults.md, prefill-overhead 25-40 ms.
	DefaultTTFTBase = 30 * time.Millisecond
	// DefaultPrefillPerToken is the H100 7-8B row of the same table (0.15-0.30 ms/token);
	// 30 ms + 256 x 0.25 ms = 94 ms lands in the published 60-120 ms TTFT for 256 tokens.
	DefaultPrefillPerToken = 250 * time.Microsecond
	// DefaultITL is the batch-1 inter-token latency of a 7-8B FP16 model on an H100
	// (10-15 ms, same table): decode is bound by reading ~16 GB of weights per step.
	DefaultITL = 12 * time.Millisecond
	// DefaultLoadFactor is the slowdown at max-num-seqs running sequences; llm-d-inference-sim
	// documents 1.5-2.0 as realistic for latency-optimised deployments (time-factor-under-load).
	DefaultLoadFactor = 2.0
	// DefaultMaxTokens is vLLM's CompletionRequest.max_tokens default (16), used for both APIs
	// when a request sets no limit.
	DefaultMaxTokens = 16
)

// Options configure one simulated vLLM server. Zero fields take the defaults above, so
// Options{Model: "m"} is a complete configuration; durations therefore cannot be exactly
// zero (use time.Nanosecond for "no delay").
type Options struct {
	// Listen is the host:port to bind; port 0 picks a free port. Default 127.0.0.1:0.
	Listen string
	// Model is the served base model name (vLLM --served-model-name). Required.
	Model string
	// LoRAs are the adapter names loaded at start (vLLM --lora-modules); requests may
	// name them as their model. LoRA metrics are exported only when this is non-empty.
	LoRAs []string
	// MaxLoRAs is how many adapters may have running requests at once (vLLM --max-loras).
	MaxLoRAs int
	// MaxNumSeqs is how many requests run at once; the rest wait FIFO (vLLM --max-num-seqs).
	MaxNumSeqs int
	// KVBlocks is the KV-cache capacity in blocks (vLLM num_gpu_blocks).
	KVBlocks int
	// BlockSize is tokens per KV block (vLLM --block-size).
	BlockSize int
	// TTFTBase is the fixed part of every prefill.
	TTFTBase time.Duration
	// PrefillPerToken is the prefill cost of each prompt token not found in the prefix cache.
	PrefillPerToken time.Duration
	// ITL is the inter-token latency with a single running sequence.
	ITL time.Duration
	// LoadFactor (>= 1) is how much longer the inter-token latency is when MaxNumSeqs
	// sequences run than when one does; the slowdown is linear in between.
	LoadFactor float64
	// MaxTokensDefault is the completion length when a request sets no max_tokens.
	MaxTokensDefault int
	// FailRate in [0,1] is the fraction of inference requests answered with a 500.
	FailRate float64
	// Seed makes the FailRate draws reproducible; 0 seeds from the clock.
	Seed uint64
	// Gzip compresses inference responses for clients that accept gzip
	// (vLLM does not; this exercises gateways' decoding), streams flushed
	// per event.
	Gzip bool
	// DeterministicIDs derives response ids from the request and uses the
	// start time as "created", so equal requests get byte-identical
	// responses (tests compare a gateway's output with the server's).
	DeterministicIDs bool
	// Logger receives one line per request (never the prompt). Nil discards.
	Logger *slog.Logger
	// OnRequest, if set, sees each request to the OpenAI API (/v1/...)
	// before it is served, so tests can record what reached this server
	// and when. It must not read the body.
	OnRequest func(*http.Request)
	// OnScrape, if set, is called on each GET /metrics before it is
	// served, so a benchmark can tell when a gateway started scraping it.
	OnScrape func()
}

// withDefaults returns o with every zero field replaced by its default.
func (o Options) withDefaults() Options {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.MaxLoRAs == 0 {
		o.MaxLoRAs = DefaultMaxLoRAs
	}
	if o.MaxNumSeqs == 0 {
		o.MaxNumSeqs = DefaultMaxNumSeqs
	}
	if o.KVBlocks == 0 {
		o.KVBlocks = DefaultKVBlocks
	}
	if o.BlockSize == 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.TTFTBase == 0 {
		o.TTFTBase = DefaultTTFTBase
	}
	if o.PrefillPerToken == 0 {
		o.PrefillPerToken = DefaultPrefillPerToken
	}
	if o.ITL == 0 {
		o.ITL = DefaultITL
	}
	if o.LoadFactor == 0 {
		o.LoadFactor = DefaultLoadFactor
	}
	if o.MaxTokensDefault == 0 {
		o.MaxTokensDefault = DefaultMaxTokens
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// validate reports every problem with a defaulted Options at once.
func (o Options) validate() error {
	var errs []error
	if o.Model == "" {
		errs = append(errs, errors.New("model is required"))
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: %w", o.Listen, err))
	}
	seen := map[string]bool{o.Model: true}
	for _, l := range o.LoRAs {
		if l == "" || seen[l] {
			errs = append(errs, fmt.Errorf("lora %q: empty or duplicate of another served name", l))
		}
		seen[l] = true
	}
	for _, c := range []struct {
		name string
		v    int
	}{
		{"max-loras", o.MaxLoRAs}, {"max-num-seqs", o.MaxNumSeqs}, {"kv-blocks", o.KVBlocks},
		{"block-size", o.BlockSize}, {"max-tokens-default", o.MaxTokensDefault},
	} {
		if c.v < 1 {
			errs = append(errs, fmt.Errorf("%s must be at least 1, got %d", c.name, c.v))
		}
	}
	for _, c := range []struct {
		name string
		d    time.Duration
	}{{"ttft-base", o.TTFTBase}, {"prefill-per-token", o.PrefillPerToken}, {"itl", o.ITL}} {
		if c.d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %v", c.name, c.d))
		}
	}
	if o.LoadFactor < 1 {
		errs = append(errs, fmt.Errorf("load-factor must be >= 1, got %v", o.LoadFactor))
	}
	if o.FailRate < 0 || o.FailRate > 1 {
		errs = append(errs, fmt.Errorf("fail-rate must be in [0,1], got %v", o.FailRate))
	}
	return errors.Join(errs...)
}
