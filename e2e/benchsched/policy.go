package main

import (
	"math/rand/v2"
	"sync/atomic"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/scheduler"
)

// policy chooses the endpoint for one request.
type policy interface {
	name() string
	pick(model string, messages []byte) (*pool.Endpoint, error)
	close()
}

// baseline policies see only the endpoint list and this client's in-flight
// counts, as a plain load balancer would.
type baseline struct {
	label string
	eps   []*pool.Endpoint
	next  atomic.Uint64
	kind  int
}

const (
	kindRandom = iota
	kindRoundRobin
	kindLeastInFlight
)

func (b *baseline) name() string { return b.label }
func (b *baseline) close()       {}

func (b *baseline) pick(string, []byte) (*pool.Endpoint, error) {
	switch b.kind {
	case kindRandom:
		return b.eps[rand.IntN(len(b.eps))], nil
	case kindRoundRobin:
		return b.eps[(b.next.Add(1)-1)%uint64(len(b.eps))], nil
	}
	return pool.LeastInFlight(b.eps), nil
}

// inflow is the scheduler with the pool's real state feed: its Manager
// scrapes the simulators' /metrics as the filter does in Envoy.
type inflow struct {
	label string
	mgr   *pool.Manager
	set   *scheduler.Set
	sched *scheduler.Scheduler
}

func newInflow(addrs []string, settings *config.Scheduler, variant string) (*inflow, error) {
	c := &config.Config{
		Models: []config.Model{{Name: baseModel, Pool: "sim"}},
		Pools:  []config.Pool{{Name: "sim", Endpoints: addrs, Scheduler: settings}},
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	mgr := pool.NewManager()
	set := scheduler.Open(mgr, c)
	label := "inflow (default profile)"
	if variant != "" {
		label = "inflow " + variant
	}
	return &inflow{label: label, mgr: mgr, set: set, sched: set.Scheduler("sim")}, nil
}

func (p *inflow) name() string { return p.label }

func (p *inflow) pick(model string, messages []byte) (*pool.Endpoint, error) {
	in := scheduler.Input{Model: model, Prompt: [][]byte{messages}}
	var out scheduler.Result
	if err := p.sched.Pick(&in, &out); err != nil {
		return nil, err
	}
	return out.Endpoints[0], nil
}

func (p *inflow) close() {
	p.set.Release()
	p.mgr.Close()
}

// stats reads the pool's counters (fail-opens, stale endpoints).
func (p *inflow) stats() pool.Stats { return p.sched.Stats(timeNow()) }
