package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gieclient "sigs.k8s.io/gateway-api-inference-extension/client-go/clientset/versioned"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/translator"
)

// DefaultCoalesce is how long the source waits after a change before
// rebuilding, so a burst (a rollout, a node draining) becomes one push. It
// is a small part of the one-second budget from a pod turning Ready to
// Envoy routing to it.
const DefaultCoalesce = 25 * time.Millisecond

// Publisher serves a resource set; xds.Server is one.
type Publisher interface {
	Publish(ctx context.Context, res *translator.Resources) (version uint64, changed bool, err error)
}

// Options configure a Source.
type Options struct {
	// Rest reaches the API server (in-cluster config or a kubeconfig).
	Rest      *rest.Config
	Publisher Publisher
	Log       *slog.Logger
	// Coalesce defaults to DefaultCoalesce.
	Coalesce time.Duration
	// Election, when set, elects the one replica that writes status; nil
	// writes no status (every replica still serves xDS).
	Election *Election
	// OnPublished, if set, runs after each build is served, with the
	// version (unchanged when the resources were) and the build's report.
	OnPublished func(version uint64, res *Result)
	// OwnNamespace is watched when the config names no namespaces.
	OwnNamespace string
}

// Namespaces are those k names, or own when it names none.
func Namespaces(k *spec.Kubernetes, own string) ([]string, error) {
	if len(k.Namespaces) > 0 {
		return k.Namespaces, nil
	}
	if own == "" {
		return nil, errors.New("kube: kubernetes.namespaces is empty and the control plane's own namespace is unknown")
	}
	return []string{own}, nil
}

// Source keeps the served snapshot in step with the API server.
type Source struct {
	opts    Options
	clients *clients
	watches []*namespaceWatch

	base    atomic.Pointer[spec.Config]
	kick    chan struct{}
	last    atomic.Pointer[Result]
	status  *statusWriter
	builds  atomic.Uint64
	started chan struct{}
	// namespaces are those watched.
	namespaces []string
}

// New connects to the API server; Run starts watching.
func New(opts Options, base *spec.Config) (*Source, error) {
	if base.Kubernetes == nil {
		return nil, errors.New("kube: the config has no kubernetes section")
	}
	if opts.Coalesce <= 0 {
		opts.Coalesce = DefaultCoalesce
	}
	kc, err := kubernetes.NewForConfig(opts.Rest)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	gc, err := gieclient.NewForConfig(opts.Rest)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	dc, err := dynamic.NewForConfig(opts.Rest)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	c := &clients{kube: kc, gie: gc, dynamic: dc}
	c.routes, c.services, c.policies, c.egBackends = discover(kc.Discovery(), opts.Log)
	s := &Source{opts: opts, clients: c, kick: make(chan struct{}, 1), started: make(chan struct{})}
	s.base.Store(base)
	namespaces, err := Namespaces(base.Kubernetes, opts.OwnNamespace)
	if err != nil {
		return nil, err
	}
	s.namespaces = namespaces
	for _, ns := range namespaces {
		w, err := watchNamespace(c, ns, s.changed)
		if err != nil {
			return nil, err
		}
		s.watches = append(s.watches, w)
	}
	s.status = newStatusWriter(c, s.watches, opts.Log)
	return s, nil
}

// SetBase replaces the file's part of the config (the file source calls it
// on every valid edit). The namespaces watched are fixed at start.
func (s *Source) SetBase(_ context.Context, c *spec.Config) error {
	if c.Kubernetes == nil {
		return errors.New("kube: the kubernetes section cannot be removed while running; restart instead")
	}
	s.base.Store(c)
	s.changed()
	return nil
}

// changed schedules a rebuild; any number of calls before it runs make one.
func (s *Source) changed() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// AIGatewayRoutes is the AIGatewayRoute resource at the version the API
// server serves (empty when its CRD is not installed) and the namespaces
// watched: what the Envoy Gateway mode's HTTPRoute controller watches too.
func (s *Source) AIGatewayRoutes() (schema.GroupVersionResource, []string) {
	return s.clients.routes, s.namespaces
}

// Dynamic is the source's client for unstructured kinds.
func (s *Source) Dynamic() dynamic.Interface { return s.clients.dynamic }

// Last is the most recent build's report (nil before the first).
func (s *Source) Last() *Result { return s.last.Load() }

// Builds counts rebuilds, for tests and metrics.
func (s *Source) Builds() uint64 { return s.builds.Load() }

// Run watches until ctx ends: it waits for every informer's first list,
// publishes, then rebuilds on each burst of changes. The status writer
// runs only while this replica leads.
func (s *Source) Run(ctx context.Context) error {
	for _, w := range s.watches {
		w.start(ctx)
	}
	for _, w := range s.watches {
		if !w.synced(ctx) {
			return fmt.Errorf("kube: informers did not sync: %w", context.Cause(ctx))
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.opts.Election != nil && s.base.Load().Kubernetes.StatusEnabled() {
		wg.Go(func() { s.opts.Election.run(ctx, s.clients.kube, s.opts.Log, s.status.run) })
	}
	s.changed() // the first build
	close(s.started)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
			timer.Reset(s.opts.Coalesce)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
			if err := s.rebuild(ctx); err != nil {
				s.opts.Log.Error("kubernetes build refused; still serving the last good snapshot", "err", err)
			}
		}
	}
}

// Started is closed once the informers have synced and the first build is
// scheduled.
func (s *Source) Started() <-chan struct{} { return s.started }

func (s *Source) rebuild(ctx context.Context) error {
	start := time.Now()
	in := &Inputs{}
	for _, w := range s.watches {
		if err := w.read(in); err != nil {
			return err
		}
	}
	res := Build(s.base.Load(), in)
	s.builds.Add(1)
	resources, err := translator.Translate(res.Config)
	if err != nil {
		return err
	}
	version, changed, err := s.opts.Publisher.Publish(ctx, resources)
	if err != nil {
		return err
	}
	s.last.Store(res)
	s.status.update(res)
	if changed {
		s.opts.Log.Info("kubernetes state applied", "version", version, "models", len(res.Config.Models),
			"pools", len(res.Config.Pools), "backends", len(res.Config.Backends), "took", time.Since(start).Round(time.Microsecond))
	}
	if s.opts.OnPublished != nil {
		s.opts.OnPublished(version, res)
	}
	return nil
}
