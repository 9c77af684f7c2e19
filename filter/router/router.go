// Package router turns a parsed request into a routing decision: which
// configured model it is, which served name to rewrite it to, and which
// endpoint of the model's pool gets it. It knows nothing of Envoy.
package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/request"
)

// Sentinel errors of routing.
var (
	ErrModelNotFound = errors.New("model not found")
	ErrNoEndpoints   = errors.New("no endpoint available")
)

// Router is an immutable compiled config.
type Router struct {
	models         map[string]*Model
	modelList      []byte
	maxRequestBody int64
}

// Model is a client-facing model with its destination.
type Model struct {
	Name string
	// Backend is set when an external backend serves the model.
	Backend string
	// Pool is set when a pool of model servers serves the model.
	Pool *pool.Pool

	targets     []target
	totalWeight uint64
}

// target is one served name of a rewrite, pre-encoded as a JSON string so
// a rewrite costs no encoding on the request path.
type target struct {
	name       string
	quoted     []byte
	cumulative uint64
}

// New compiles cfg, which must be valid. reg keeps endpoint state across
// configs.
func New(cfg *config.Config, reg *pool.Registry) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pools := make(map[string]*pool.Pool, len(cfg.Pools))
	for _, p := range cfg.Pools {
		pools[p.Name] = reg.Pool(p.Name, p.Endpoints)
	}
	r := &Router{
		models:         make(map[string]*Model, len(cfg.Models)),
		maxRequestBody: cfg.Limits.EffectiveMaxRequestBodyBytes(),
	}
	for _, m := range cfg.Models {
		cm := &Model{Name: m.Name, Backend: m.Backend, Pool: pools[m.Pool]}
		for _, t := range m.Rewrite {
			if t.EffectiveWeight() == 0 {
				continue
			}
			quoted, err := json.Marshal(t.Model)
			if err != nil {
				return nil, fmt.Errorf("model %q: %w", m.Name, err)
			}
			cm.totalWeight += uint64(t.EffectiveWeight())
			cm.targets = append(cm.targets, target{name: t.Model, quoted: quoted, cumulative: cm.totalWeight})
		}
		r.models[m.Name] = cm
	}
	list, err := renderModelList(cfg.Models, time.Now().Unix())
	if err != nil {
		return nil, err
	}
	r.modelList = list
	return r, nil
}

// MaxRequestBodyBytes is the configured body limit.
func (r *Router) MaxRequestBodyBytes() int64 { return r.maxRequestBody }

// ModelList is the GET /v1/models response body.
func (r *Router) ModelList() []byte { return r.modelList }

// Lookup finds the configured model; the byte slice is not retained.
func (r *Router) Lookup(name []byte) (*Model, error) {
	if m, ok := r.models[string(name)]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrModelNotFound, name)
}

// Models lists the configured models in name order.
func (r *Router) Models() []*Model {
	out := make([]*Model, 0, len(r.models))
	for _, m := range r.models {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *Model) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Served picks the name the model server should see. rewrite is false
// when the body already says it.
func (m *Model) Served() (name string, quoted []byte, rewrite bool) {
	switch len(m.targets) {
	case 0:
		return m.Name, nil, false
	case 1:
		t := &m.targets[0]
		return t.name, t.quoted, t.name != m.Name
	}
	n := rand.Uint64N(m.totalWeight)
	for i := range m.targets {
		if t := &m.targets[i]; n < t.cumulative {
			return t.name, t.quoted, t.name != m.Name
		}
	}
	panic("router: weights out of range") // unreachable: n < totalWeight
}

// PickEndpoint chooses the endpoint with the fewest requests in flight from
// this Envoy and counts the new request on it; the caller must Release it
// when the stream ends.
func (m *Model) PickEndpoint() (*pool.Endpoint, error) {
	if m.Pool == nil {
		return nil, fmt.Errorf("%w: model %q is served by backend %q", ErrNoEndpoints, m.Name, m.Backend)
	}
	ep := pool.LeastInFlight(m.Pool.Endpoints)
	if ep == nil {
		return nil, fmt.Errorf("%w: pool %q has no endpoints", ErrNoEndpoints, m.Pool.Name)
	}
	ep.Acquire()
	return ep, nil
}

// Decision is where one request goes.
type Decision struct {
	Model *Model
	// ServedModel is the name the model server sees.
	ServedModel string
	// RewrittenBody is the body with the served name, or nil when unchanged.
	RewrittenBody []byte
	// Endpoint is the chosen pool endpoint (nil for external backends); it
	// has been Acquired.
	Endpoint *pool.Endpoint
}

// Route decides where a parsed request goes.
func (r *Router) Route(req *request.Request, body []byte) (Decision, error) {
	m, err := r.Lookup(req.Model)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Model: m}
	name, quoted, rewrite := m.Served()
	d.ServedModel = name
	if rewrite {
		d.RewrittenBody = request.RewriteModel(body, req, quoted)
	}
	if m.Pool != nil {
		if d.Endpoint, err = m.PickEndpoint(); err != nil {
			return Decision{}, err
		}
	}
	return d, nil
}
