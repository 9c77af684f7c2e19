package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// route is where the client sends a request. With -via host every policy
// goes through the ABI host running a real Go filter .so, driven over xDS:
// Inflow's policy is inflow.so picking inside a host fed by the real
// control plane; a baseline picks in the client and steers an ORIGINAL_DST
// cluster with the x-gateway-destination-endpoint header through the
// pass-through filter, so every policy pays the same proxy hop.
type route struct {
	host *harness.Host
	dir  string
}

func (r *route) close() {
	if r.host != nil {
		r.host.Close()
	}
	if r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
}

func (r *route) url() string { return r.host.URL("/v1/chat/completions") }

// startHost runs the host with the inflow filter for addrs, or with the
// pass-through filter when inflow is false.
func startHost(ctx context.Context, addrs []string, inflow bool) (*route, error) {
	var settings map[string]any
	if inflow {
		settings = map[string]any{}
	}
	return startHostWith(ctx, addrs, settings)
}

// startHostWith runs the host with inflow.so and these pool scheduler
// settings (the adapters added), or with the pass-through filter when
// settings is nil.
func startHostWith(ctx context.Context, addrs []string, settings map[string]any) (r *route, err error) {
	r = &route{}
	defer func() {
		if err != nil {
			r.close()
			err = fmt.Errorf("start host (run make build-filter build-host build-testfilters): %w", err)
		}
	}()
	if settings == nil {
		r.host, err = harness.StartPassthroughHost(ctx, harness.PassthroughOptions{Concurrency: 2})
		return r, err
	}
	if r.dir, err = os.MkdirTemp("", "benchsched-"); err != nil {
		return r, err
	}
	r.host, err = harness.StartInflowHost(ctx, r.dir, inflowConfig(addrs, settings), harness.XDSHostOptions{Concurrency: 2})
	return r, err
}

// inflowConfig is the control plane's config: the workload's base model and
// both adapters from one pool of the simulators, with the default scheduler
// profile changed by settings.
func inflowConfig(addrs []string, settings map[string]any) map[string]any {
	var models []map[string]any
	for _, m := range adapterMix {
		models = append(models, map[string]any{"name": m.model, "pool": "sim"})
	}
	sched := map[string]any{"lora": map[string]any{"adapters": []string{"sql-lora", "tweet-lora"}}}
	for k, v := range settings {
		sched[k] = v
	}
	return map[string]any{
		"listeners": []map[string]any{{"name": "public", "address": "127.0.0.1", "port": 10000}},
		"models":    models,
		"pools":     []map[string]any{{"name": "sim", "endpoints": addrs, "scheduler": sched}},
	}
}

// hostStat reads one numeric stat of the host's /stats.
func hostStat(ctx context.Context, h *harness.Host, name string) (uint64, bool) {
	stats, err := h.Stats(ctx)
	if err != nil {
		return 0, false
	}
	return statValue(stats, name)
}

func statValue(stats map[string]string, name string) (uint64, bool) {
	v, ok := stats[name]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

// waitHostFresh waits until the filter in the host has scraped every
// simulator (its stale-endpoint gauge, exported once a second, is 0).
func waitHostFresh(ctx context.Context, h *harness.Host) error {
	return poll.Until(ctx, 15*time.Second, "fresh metrics of every simulator in the filter's stats", func() bool {
		n, ok := hostStat(ctx, h, protocol.PoolStat("sim", protocol.PoolStatStaleEndpoints))
		return ok && n == 0
	})
}

// waitHostPicks waits until the filter's exported pick counters of addrs
// add up to at least want.
func waitHostPicks(ctx context.Context, h *harness.Host, addrs []string, want int) error {
	var got uint64
	err := poll.Until(ctx, 15*time.Second, fmt.Sprintf("%d picks in the filter's stats", want), func() bool {
		stats, err := h.Stats(ctx)
		if err != nil {
			return false
		}
		got = 0
		for _, a := range addrs {
			n, _ := statValue(stats, protocol.EndpointStat("sim", a, protocol.EndpointStatPicks))
			got += n
		}
		return got >= uint64(want)
	})
	if err != nil {
		return fmt.Errorf("%w (exported %d)", err, got)
	}
	return nil
}
