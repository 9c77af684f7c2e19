package demo

import (
	"log/slog"
	"time"

	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
)

// Server is one model server's simulated load. The compose demo gives the
// llm-d inference simulator the same numbers (--time-to-first-token,
// --inter-token-latency, --max-num-seqs, --max-loras,
// --time-factor-under-load); build/check verifies the compose side.
type Server struct {
	Name       string // the compose service and POD_NAME
	TTFT       time.Duration
	ITL        time.Duration
	MaxNumSeqs int
	MaxLoRAs   int
	LoadFactor float64
}

// Servers are the three model servers, in the order of the pool's
// endpoints: a fast one, a slow one, and a small one that queues early, so
// the scheduler has a reason to prefer one.
var Servers = []Server{
	{Name: "vllm-a", TTFT: 20 * time.Millisecond, ITL: 10 * time.Millisecond, MaxNumSeqs: 16, MaxLoRAs: 2, LoadFactor: 1.5},
	{Name: "vllm-b", TTFT: 80 * time.Millisecond, ITL: 30 * time.Millisecond, MaxNumSeqs: 16, MaxLoRAs: 2, LoadFactor: 2},
	{Name: "vllm-c", TTFT: 40 * time.Millisecond, ITL: 15 * time.Millisecond, MaxNumSeqs: 2, MaxLoRAs: 1, LoadFactor: 3},
}

// simOptions are the in-process simulator settings for s serving c's base
// model and adapters on a free loopback port.
func (s Server) simOptions(c *Config, log *slog.Logger) sim.Options {
	return sim.Options{
		Model:      c.Base,
		LoRAs:      append([]string(nil), c.Adapters...),
		MaxLoRAs:   s.MaxLoRAs,
		MaxNumSeqs: s.MaxNumSeqs,
		TTFTBase:   s.TTFT,
		ITL:        s.ITL,
		LoadFactor: s.LoadFactor,
		Logger:     log.With("server", s.Name),
	}
}
