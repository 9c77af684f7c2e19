// Package router turns a parsed request into a routing decision: which
// configured model it is, which served name to rewrite it to, and which
// endpoint of the model's pool gets it. It knows nothing of Envoy.
package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/cost"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/filter/protocol"
	"github.com/inflow-gateway/inflow/filter/request"
	"github.com/inflow-gateway/inflow/filter/scheduler"
	"github.com/inflow-gateway/inflow/filter/split"
)

// ErrModelNotFound: the body names a model the gateway does not serve.
var ErrModelNotFound = errors.New("model not found")

// ErrPoolNotFound: the matched route is bound to a pool the filter config
// does not hold (yet: routes and the filter config reach Envoy separately).
var ErrPoolNotFound = errors.New("pool not found")

// maxQuotedModel caps how much of an unknown model name an error repeats.
const maxQuotedModel = 256

// Headers reads request headers (Envoy's RequestHeaderMap satisfies it).
type Headers interface {
	Get(key string) (string, bool)
}

// Router is an immutable compiled config. Close releases its pools.
type Router struct {
	models         map[string]*Model
	modelList      []byte
	maxRequestBody int64
	requestUsage   bool
	cfg            *config.Config
	schedulers     *scheduler.Set
	health         *split.Registry
	destinations   map[string]config.Destination
	poolConfigs    map[string]*config.Pool
	// costs are the gateway-wide request costs, which models a bound
	// route serves without listing them get.
	costs []cost.Rule
}

// Model is a client-facing model with its destination.
type Model struct {
	Name string
	// Backend is set when an external backend serves the model.
	Backend string
	// Scheduler picks endpoints of the model's pool; nil for a backend.
	Scheduler *scheduler.Scheduler
	// Destination is the pool's destination mode (with its default
	// applied): how the filter must hand the pick to Envoy.
	Destination config.Destination
	// BackendName is the pool or external backend serving the model.
	BackendName string
	// Costs are the model's request costs, gateway-wide ones included.
	Costs []cost.Rule

	sessionHeader string
	object        []byte
	// pool is the config of the model's pool (its objectives); nil for a
	// backend.
	pool        *config.Pool
	targets     []target
	totalWeight uint64
	// split chooses among the model's backend refs; nil unless it has
	// some.
	split *split.Split
}

// target is one served name of a rewrite, pre-encoded as a JSON string so
// a rewrite costs no encoding on the request path.
type target struct {
	name       string
	quoted     []byte
	cumulative uint64
}

// New compiles cfg, which must have passed Validate (config.Parse and
// config.FromAny do that), retaining its pools on pools (which keeps their
// metrics, in-flight counts and prefix index across configs) and its split
// backends' health on health (which keeps their ejections).
func New(cfg *config.Config, pools *pool.Manager, health *split.Registry) (*Router, error) {
	list, objects, err := renderModels(cfg.Models, time.Now().Unix())
	if err != nil {
		return nil, err
	}
	r := &Router{
		models:         make(map[string]*Model, len(cfg.Models)),
		modelList:      list,
		maxRequestBody: cfg.Limits.EffectiveMaxRequestBodyBytes(),
		requestUsage:   cfg.Usage.EffectiveRequestUsage(),
		cfg:            cfg,
		health:         health,
	}
	global, err := cost.CompileAll(cfg.Costs)
	if err != nil {
		return nil, fmt.Errorf("costs: %w", err)
	}
	r.costs = global
	for _, m := range cfg.Models {
		own, err := cost.CompileAll(m.Costs)
		if err != nil {
			return nil, fmt.Errorf("model %q costs: %w", m.Name, err)
		}
		cm := &Model{Name: m.Name, Backend: m.Backend, object: objects[m.Name], BackendName: m.Pool, Costs: cost.Merge(own, global)}
		if m.Backend != "" {
			cm.BackendName = m.Backend
		}
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
	// Retain pools and health last: nothing above can fail after.
	for _, m := range cfg.Models {
		r.models[m.Name].split = r.newSplit(m)
	}
	r.schedulers = scheduler.Open(pools, cfg)
	r.destinations = make(map[string]config.Destination, len(cfg.Pools))
	r.poolConfigs = make(map[string]*config.Pool, len(cfg.Pools))
	for i, p := range cfg.Pools {
		r.destinations[p.Name] = p.Destination.Effective()
		r.poolConfigs[p.Name] = &cfg.Pools[i]
	}
	for _, m := range cfg.Models {
		if m.Pool != "" {
			cm := r.models[m.Name]
			cm.pool = r.poolConfigs[m.Pool]
			cm.Scheduler = r.schedulers.Scheduler(m.Pool)
			cm.sessionHeader = cm.Scheduler.SessionHeader()
			cm.Destination = r.destinations[m.Pool]
		}
	}
	return r, nil
}

// Close releases the config's hold on its pools and backends; pools no
// live config holds stop scraping.
func (r *Router) Close() {
	r.schedulers.Release()
	for _, m := range r.models {
		if m.split == nil {
			continue
		}
		for _, ref := range m.split.Refs() {
			r.health.Release(ref.Backend)
		}
	}
}

// Schedulers are the config's per-pool schedulers, for stats export.
func (r *Router) Schedulers() map[string]*scheduler.Scheduler { return r.schedulers.Schedulers() }

// MaxRequestBodyBytes is the configured body limit.
func (r *Router) MaxRequestBodyBytes() int64 { return r.maxRequestBody }

// ModelList is the GET /v1/models response body.
func (r *Router) ModelList() []byte { return r.modelList }

// Object is the model's GET /v1/models/{id} response body.
func (m *Model) Object() []byte { return m.object }

// Lookup finds the configured model; the byte slice is not retained.
func (r *Router) Lookup(name []byte) (*Model, error) {
	if m, ok := r.models[string(name)]; ok {
		return m, nil
	}
	if len(name) > maxQuotedModel {
		name = name[:maxQuotedModel]
	}
	return nil, fmt.Errorf("%w: %q", ErrModelNotFound, name)
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

// Decision is where one request goes.
type Decision struct {
	Model *Model
	// ServedModel is the name the model server sees.
	ServedModel string
	// Edits change the body: the served name, the usage request. Adapters
	// apply them to their proxy's buffer (request.Edits.Pieces) or to a
	// copy (request.Edits.Apply); none when the body goes as it came.
	Edits request.Edits
	// Endpoints are the primary endpoint then the fallbacks (nil for an
	// external backend). The primary has been Acquired: Release it when
	// the stream ends.
	Endpoints []*pool.Endpoint
	// FailOpen is set when no endpoint had fresh metrics.
	FailOpen bool
	// UsageRequested is set when the body was made to ask the server for
	// usage the client did not ask for: the usage chunk must not reach the
	// client.
	UsageRequested bool
	// Ref is the backend ref chosen for a model with backend refs (nil
	// otherwise): where the request goes, and whose health its response
	// updates.
	Ref *split.Ref
}

// BackendName is the pool or external backend the request goes to.
func (d *Decision) BackendName() string {
	if d.Ref != nil {
		return d.Ref.Backend
	}
	return d.Model.BackendName
}

// Route decides where a parsed request goes. endpoints is scratch space
// for the pick (pass a slice with capacity to avoid an allocation).
func (r *Router) Route(req *request.Request, body []byte, h Headers, endpoints []*pool.Endpoint) (Decision, error) {
	m, err := r.Lookup(req.Model)
	if err != nil {
		return Decision{}, err
	}
	return r.decide(m, req, body, h, endpoints)
}

// RouteInPool decides for a request whose route is bound to poolName
// (config.RouteConfig): the route chose the pool, so a model name the
// config does not list is served from it, sent to the model server as the
// client wrote it. A listed model goes where the config says, as Route
// does: routes match the x-ai-eg-model header the filter then sets, so the
// route first matched (before the header existed) need not be the
// model's. An empty poolName is Route.
func (r *Router) RouteInPool(poolName string, req *request.Request, body []byte, h Headers, endpoints []*pool.Endpoint) (Decision, error) {
	if m, ok := r.models[string(req.Model)]; ok || poolName == "" {
		if !ok {
			return r.Route(req, body, h, endpoints)
		}
		return r.decide(m, req, body, h, endpoints)
	}
	s := r.schedulers.Scheduler(poolName)
	if s == nil {
		return Decision{}, fmt.Errorf("%w: %q", ErrPoolNotFound, poolName)
	}
	if len(req.Model) == 0 {
		return Decision{}, request.ErrMissingModel
	}
	m := &Model{Name: string(req.Model), BackendName: poolName, Costs: r.costs, Scheduler: s,
		Destination: r.destinations[poolName], pool: r.poolConfigs[poolName], sessionHeader: s.SessionHeader()}
	return r.decide(m, req, body, h, endpoints)
}

// decide picks the served name and the endpoints of m's pool.
func (r *Router) decide(m *Model, req *request.Request, body []byte, h Headers, endpoints []*pool.Endpoint) (Decision, error) {
	d := Decision{Model: m}
	name, quoted, rewrite := m.Served()
	if m.split != nil {
		d.Ref = m.split.Pick(time.Now(), rand.Uint64())
		name, quoted = d.Ref.Served, d.Ref.Quoted
		rewrite = name != m.Name
	}
	d.ServedModel = name
	if m.Scheduler != nil {
		in := scheduler.Input{Model: name, Priority: r.priority(m, h)}
		var parts [2][]byte
		for i := range parts {
			if p := req.PromptBytes(body, i); p != nil {
				in.Prompt = append(parts[:len(in.Prompt)], p)
			}
		}
		if m.sessionHeader != "" {
			in.SessionKey, _ = h.Get(m.sessionHeader)
		}
		out := scheduler.Result{Endpoints: endpoints[:0]}
		if err := m.Scheduler.Pick(&in, &out); err != nil {
			return Decision{}, err
		}
		out.Endpoints[0].Acquire()
		d.Endpoints, d.FailOpen = out.Endpoints, out.FailOpen
	}
	var edits [3]request.Edit
	e := edits[:0]
	if rewrite {
		e = append(e, request.ModelEdit(req, quoted))
	}
	if r.asksUsage(m, req, body) {
		e = req.UsageEdits(body, e)
		d.UsageRequested = true
	}
	d.Edits = request.NewEdits(e)
	return d, nil
}

// asksUsage reports whether the filter should ask the server for usage on
// the client's behalf: a streaming chat or completions request that does
// not, to a pool. An external backend's stream with usage asked for can
// differ in every chunk (OpenAI adds "usage":null to each), so its body is
// left alone.
func (r *Router) asksUsage(m *Model, req *request.Request, body []byte) bool {
	return r.requestUsage && m.Scheduler != nil && req.Stream &&
		(req.Kind == request.ChatCompletions || req.Kind == request.Completions) && !req.AsksForUsage(body)
}

func (r *Router) priority(m *Model, h Headers) int {
	if len(r.cfg.Objectives) == 0 && len(m.pool.Objectives) == 0 {
		return 0
	}
	objective, _ := h.Get(protocol.HeaderObjective)
	return m.pool.PriorityFor(r.cfg, objective)
}
