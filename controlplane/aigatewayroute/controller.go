package aigatewayroute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/inflow-gateway/inflow/controlplane/kube"
)

// HTTPRoutes is the resource the controller writes.
var HTTPRoutes = gwapiv1.SchemeGroupVersion.WithResource("httproutes")

// fieldManager owns the fields the controller applies (server-side apply).
const fieldManager = "inflow-controlplane"

// Controller keeps, in each watched namespace, one generated HTTPRoute per
// AIGatewayRoute: created and updated with it (server-side apply of the
// whole spec, so a hand edit of a generated field is put back), deleted
// when it goes (also by Kubernetes' garbage collector through the owner
// reference, should the controller be down then), and never touching an
// HTTPRoute it did not generate. Every replica may run it: they apply the
// same object, and applying an unchanged object changes nothing.
type Controller struct {
	// Client reaches the API server.
	Client dynamic.Interface
	// Routes is the AIGatewayRoute resource at the version the API server
	// serves (the Kubernetes source discovers it).
	Routes schema.GroupVersionResource
	// Namespaces are watched; AIGatewayRoutes elsewhere are not ours.
	Namespaces []string
	Log        *slog.Logger
	// OnSynced, if set, is called after each reconcile with what the
	// route's conversion left out (nil when the route is gone).
	OnSynced func(route types.NamespacedName, problems []string)

	mu       sync.Mutex
	routes   map[string]cache.GenericLister
	httpRts  map[string]cache.GenericLister
	problems map[types.NamespacedName][]string
}

// ForSource is the controller of the Kubernetes source's AIGatewayRoutes,
// in its namespaces and with its client; nil when the API server does not
// serve AIGatewayRoutes (the AI Gateway's CRDs are not installed).
func ForSource(s *kube.Source, log *slog.Logger) *Controller {
	gvr, namespaces := s.AIGatewayRoutes()
	if gvr.Resource == "" {
		log.Warn("AIGatewayRoutes are not served by the API server: no HTTPRoutes are generated")
		return nil
	}
	return &Controller{Client: s.Dynamic(), Routes: gvr, Namespaces: namespaces, Log: log}
}

// Run watches until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName]())
	defer queue.ShutDown()
	c.routes, c.httpRts, c.problems = map[string]cache.GenericLister{}, map[string]cache.GenericLister{}, map[types.NamespacedName][]string{}
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if u, ok := obj.(*unstructured.Unstructured); ok {
			queue.Add(types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()})
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) }, DeleteFunc: enqueue}
	var synced []cache.InformerSynced
	for _, ns := range c.Namespaces {
		routes := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.Client, 0, ns, nil)
		generated := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.Client, 0, ns, func(o *metav1.ListOptions) {
			o.LabelSelector = labels.Set{ManagedByLabel: ManagedBy}.String()
		})
		for _, inf := range []struct {
			f   dynamicinformer.DynamicSharedInformerFactory
			gvr schema.GroupVersionResource
			set map[string]cache.GenericLister
		}{{routes, c.Routes, c.routes}, {generated, HTTPRoutes, c.httpRts}} {
			gi := inf.f.ForResource(inf.gvr)
			if _, err := gi.Informer().AddEventHandler(handler); err != nil {
				return err
			}
			inf.set[ns] = gi.Lister()
			synced = append(synced, gi.Informer().HasSynced)
			inf.f.Start(ctx.Done())
		}
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("aigatewayroute: informers did not sync: %w", context.Cause(ctx))
	}
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for {
		key, quit := queue.Get()
		if quit {
			return nil
		}
		if err := c.reconcile(ctx, key); err != nil {
			c.Log.Warn("AIGatewayRoute not synced to its HTTPRoute; retrying", "route", key, "err", err)
			queue.AddRateLimited(key)
		} else {
			queue.Forget(key)
		}
		queue.Done(key)
	}
}

// Problems are what the last sync of each route left out.
func (c *Controller) Problems() map[types.NamespacedName][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[types.NamespacedName][]string, len(c.problems))
	for k, v := range c.problems {
		out[k] = v
	}
	return out
}

func (c *Controller) reconcile(ctx context.Context, key types.NamespacedName) error {
	route, err := get(c.routes[key.Namespace], key)
	if err != nil {
		return err
	}
	existing, err := get(c.httpRts[key.Namespace], key)
	if err != nil {
		return err
	}
	if route == nil {
		c.report(key, nil, false)
		if existing == nil || !OwnedBy(existing, nil) {
			return nil
		}
		err := c.Client.Resource(HTTPRoutes).Namespace(key.Namespace).Delete(ctx, key.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: ptr(existing.GetUID())},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	res, err := HTTPRoute(route)
	if err != nil {
		c.report(key, []string{err.Error()}, true)
		return nil // nothing to retry until the route changes
	}
	if existing == nil {
		// The lister only holds generated routes: a user's own HTTPRoute of
		// this name is not in it, and applying would take it over.
		current, err := c.Client.Resource(HTTPRoutes).Namespace(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
		switch {
		case err == nil && !OwnedBy(current, route):
			c.report(key, append(res.Problems, fmt.Sprintf("HTTPRoute %s exists and was not generated from this AIGatewayRoute: left alone", key)), true)
			return nil
		case err != nil && !apierrors.IsNotFound(err):
			return err
		}
	}
	obj, err := toUnstructured(res.Route)
	if err != nil {
		return err
	}
	// Force: the spec is this controller's alone, hand edits included.
	if _, err := c.Client.Resource(HTTPRoutes).Namespace(key.Namespace).Apply(ctx, key.Name, obj,
		metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return err
	}
	c.report(key, res.Problems, true)
	return nil
}

func (c *Controller) report(key types.NamespacedName, problems []string, exists bool) {
	c.mu.Lock()
	if exists {
		c.problems[key] = problems
	} else {
		delete(c.problems, key)
	}
	c.mu.Unlock()
	for _, p := range problems {
		c.Log.Warn("AIGatewayRoute: part not served", "route", key, "problem", p)
	}
	if c.OnSynced != nil {
		c.OnSynced(key, problems)
	}
}

func get(l cache.GenericLister, key types.NamespacedName) (*unstructured.Unstructured, error) {
	if l == nil {
		return nil, fmt.Errorf("aigatewayroute: namespace %s is not watched", key.Namespace)
	}
	obj, err := l.ByNamespace(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, errors.New("aigatewayroute: lister returned a typed object")
	}
	return u, nil
}

func ptr[T any](v T) *T { return &v }
