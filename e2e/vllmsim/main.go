// Command vllmsim serves a simulated vLLM model server (see package sim for the model).
//
//	vllmsim --listen 127.0.0.1:8000 --model llama [--lora a,b] [--max-loras N] ...
//	vllmsim cluster -n 4 --listen 127.0.0.1:8000 --model llama ...   (ports 8000-8003)
//
// It runs until interrupted (SIGINT/SIGTERM).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "vllmsim:", err)
		}
		os.Exit(2)
	}
}

// config is the parsed command line.
type config struct {
	opts      sim.Options
	isCluster bool
	n         int // servers in a cluster
}

// parseArgs parses "[cluster -n N] flags..." into a config.
func parseArgs(args []string, stderr io.Writer) (config, error) {
	var cfg config
	name := "vllmsim"
	if len(args) > 0 && args[0] == "cluster" {
		name, args = "vllmsim cluster", args[1:]
		cfg.isCluster = true
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &cfg.opts
	var loras, logLevel string
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8000", "host:port to listen on (cluster: the first of consecutive ports; port 0: ephemeral)")
	fs.StringVar(&o.Model, "model", "", "served model name (required)")
	fs.StringVar(&loras, "lora", "", "comma-separated LoRA adapter names to load")
	fs.IntVar(&o.MaxLoRAs, "max-loras", sim.DefaultMaxLoRAs, "adapters that may run at once")
	fs.IntVar(&o.MaxNumSeqs, "max-num-seqs", sim.DefaultMaxNumSeqs, "requests that may run at once; the rest wait FIFO")
	fs.IntVar(&o.KVBlocks, "kv-blocks", sim.DefaultKVBlocks, "KV cache capacity in blocks")
	fs.IntVar(&o.BlockSize, "block-size", sim.DefaultBlockSize, "tokens per KV block")
	fs.DurationVar(&o.TTFTBase, "ttft-base", sim.DefaultTTFTBase, "fixed prefill time")
	fs.DurationVar(&o.PrefillPerToken, "prefill-per-token", sim.DefaultPrefillPerToken, "prefill time per uncached prompt token")
	fs.DurationVar(&o.ITL, "itl", sim.DefaultITL, "inter-token latency with one running request")
	fs.Float64Var(&o.LoadFactor, "load-factor", sim.DefaultLoadFactor, "slowdown with max-num-seqs running requests (>= 1)")
	fs.IntVar(&o.MaxTokensDefault, "max-tokens-default", sim.DefaultMaxTokens, "completion tokens when a request sets no max_tokens")
	fs.Float64Var(&o.FailRate, "fail-rate", 0, "fraction of inference requests answered with 500")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed for --fail-rate draws (0: from the clock)")
	fs.BoolVar(&o.Gzip, "gzip", false, "gzip inference responses for clients that accept it (vLLM does not)")
	fs.BoolVar(&o.DeterministicIDs, "deterministic-ids", false, "ids and created derived from the request: equal requests, equal bytes")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	if cfg.isCluster {
		fs.IntVar(&cfg.n, "n", 2, "number of servers")
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if loras != "" {
		for _, l := range strings.Split(loras, ",") {
			o.LoRAs = append(o.LoRAs, strings.TrimSpace(l))
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return cfg, fmt.Errorf("--log-level: %w", err)
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if cfg.isCluster && cfg.n < 1 {
		return cfg, fmt.Errorf("-n must be at least 1, got %d", cfg.n)
	}
	return cfg, nil
}

// run starts the configured server(s), prints their addresses and serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	var closer interface{ Close() error }
	var addrs []string
	if cfg.isCluster {
		c, err := sim.StartCluster(ctx, cfg.n, cfg.opts)
		if err != nil {
			return err
		}
		closer, addrs = c, c.Addrs()
	} else {
		s, err := sim.Start(ctx, cfg.opts)
		if err != nil {
			return err
		}
		closer, addrs = s, []string{s.Addr()}
	}
	for _, a := range addrs {
		fmt.Fprintln(stdout, a) // one address per line: scripts read these to find the servers
	}
	<-ctx.Done()
	return closer.Close()
}
