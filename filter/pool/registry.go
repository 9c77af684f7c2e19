package pool

import (
	"slices"
	"sync"
)

// Pool is an immutable snapshot of one pool's endpoints.
type Pool struct {
	Name      string
	Endpoints []*Endpoint
}

// Registry keeps endpoint identity across config updates: a new config that
// lists the same pool and address gets the same *Endpoint. It is used when
// configs are parsed, never on the request path.
type Registry struct {
	mu    sync.Mutex
	pools map[string]map[string]*Endpoint
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{pools: make(map[string]map[string]*Endpoint)}
}

// Pool returns a snapshot of pool name with the given addresses, reusing
// known endpoints. Endpoints dropped from the list are forgotten, so a
// re-added address starts from zero.
func (r *Registry) Pool(name string, addrs []string) *Pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	known := r.pools[name]
	next := make(map[string]*Endpoint, len(addrs))
	p := &Pool{Name: name, Endpoints: make([]*Endpoint, 0, len(addrs))}
	for _, a := range addrs {
		ep := known[a]
		if ep == nil {
			ep = &Endpoint{Addr: a}
		}
		next[a] = ep
		p.Endpoints = append(p.Endpoints, ep)
	}
	r.pools[name] = next
	return p
}

// Addrs lists the pool's endpoint addresses in order.
func (p *Pool) Addrs() []string {
	out := make([]string, 0, len(p.Endpoints))
	for _, e := range p.Endpoints {
		out = append(out, e.Addr)
	}
	return slices.Clip(out)
}
