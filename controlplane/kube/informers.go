package kube

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	gieclient "sigs.k8s.io/gateway-api-inference-extension/client-go/clientset/versioned"
	gieinformers "sigs.k8s.io/gateway-api-inference-extension/client-go/informers/externalversions"
	gielistersv1 "sigs.k8s.io/gateway-api-inference-extension/client-go/listers/api/v1"
	gielistersv1alpha2 "sigs.k8s.io/gateway-api-inference-extension/client-go/listers/apix/v1alpha2"
)

// clients are the API clients the source and the status writer use.
type clients struct {
	kube    kubernetes.Interface
	gie     gieclient.Interface
	dynamic dynamic.Interface
	// routes, services and policies are the AI Gateway resources at the
	// version the API server serves (zero when the CRD is not installed).
	routes, services, policies schema.GroupVersionResource
	egBackends                 schema.GroupVersionResource
}

// discover picks the newest served version of each AI Gateway resource.
// A missing CRD is not an error: a cluster may use only InferencePools
// named by the file, or no external backends.
func discover(d discovery.DiscoveryInterface, log *slog.Logger) (routes, services, policies, eg schema.GroupVersionResource) {
	served := func(gv schema.GroupVersion, resource string) bool {
		list, err := d.ServerResourcesForGroupVersion(gv.String())
		if err != nil {
			return false
		}
		return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == resource })
	}
	pick := func(resource string) schema.GroupVersionResource {
		for _, v := range aiGatewayVersions {
			gv := schema.GroupVersion{Group: aiGatewayGroup, Version: v}
			if served(gv, resource) {
				return gv.WithResource(resource)
			}
		}
		log.Warn("resource not served by the API server; install the Envoy AI Gateway CRDs to use it",
			"group", aiGatewayGroup, "resource", resource)
		return schema.GroupVersionResource{}
	}
	routes, services, policies = pick(resourceRoutes), pick(resourceBackends), pick(resourcePolicies)
	if served(egBackends.GroupVersion(), egBackends.Resource) {
		eg = egBackends
	} else {
		log.Info("Envoy Gateway Backends not served; AIServiceBackends cannot be resolved", "group", envoyGatewayGroup)
	}
	return routes, services, policies, eg
}

// namespaceWatch is the informers of one watched namespace.
type namespaceWatch struct {
	kube    kubeinformers.SharedInformerFactory
	gie     gieinformers.SharedInformerFactory
	dynamic dynamicinformer.DynamicSharedInformerFactory

	pods       corelisters.PodLister
	pools      gielistersv1.InferencePoolLister
	objectives gielistersv1alpha2.InferenceObjectiveLister
	// generic listers of the unstructured kinds, nil when not served.
	routes, services, policies, egBackends cache.GenericLister
}

// watchNamespace sets up (but does not start) the informers of ns; every
// change that can alter the spec calls changed.
func watchNamespace(c *clients, ns string, changed func()) (*namespaceWatch, error) {
	w := &namespaceWatch{
		kube: kubeinformers.NewSharedInformerFactoryWithOptions(c.kube, 0,
			kubeinformers.WithNamespace(ns), kubeinformers.WithTransform(slimPod)),
		gie:     gieinformers.NewSharedInformerFactoryWithOptions(c.gie, 0, gieinformers.WithNamespace(ns)),
		dynamic: dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.dynamic, 0, ns, nil),
	}
	pods := w.kube.Core().V1().Pods()
	pools := w.gie.Inference().V1().InferencePools()
	objectives := w.gie.XInference().V1alpha2().InferenceObjectives()
	w.pods, w.pools, w.objectives = pods.Lister(), pools.Lister(), objectives.Lister()
	handlers := []struct {
		inf     cache.SharedIndexInformer
		changed func(old, cur any) bool
	}{
		{pods.Informer(), podChanged},
		{pools.Informer(), specChanged},
		{objectives.Informer(), specChanged},
	}
	for _, r := range []struct {
		gvr    schema.GroupVersionResource
		lister *cache.GenericLister
	}{{c.routes, &w.routes}, {c.services, &w.services}, {c.policies, &w.policies}, {c.egBackends, &w.egBackends}} {
		if r.gvr.Resource == "" {
			continue
		}
		inf := w.dynamic.ForResource(r.gvr)
		*r.lister = inf.Lister()
		handlers = append(handlers, struct {
			inf     cache.SharedIndexInformer
			changed func(old, cur any) bool
		}{inf.Informer(), specChanged})
	}
	for _, h := range handlers {
		isChange := h.changed
		if _, err := h.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { changed() },
			DeleteFunc: func(any) { changed() },
			UpdateFunc: func(old, cur any) {
				if isChange(old, cur) {
					changed()
				}
			},
		}); err != nil {
			return nil, fmt.Errorf("kube: watch %s: %w", ns, err)
		}
	}
	return w, nil
}

func (w *namespaceWatch) start(ctx context.Context) {
	w.kube.Start(ctx.Done())
	w.gie.Start(ctx.Done())
	w.dynamic.Start(ctx.Done())
}

// synced waits for every informer's first list.
func (w *namespaceWatch) synced(ctx context.Context) bool {
	return allTrue(w.kube.WaitForCacheSync(ctx.Done())) && allTrue(w.gie.WaitForCacheSync(ctx.Done())) &&
		allTrue(w.dynamic.WaitForCacheSync(ctx.Done()))
}

func allTrue[K comparable](m map[K]bool) bool {
	for _, ok := range m {
		if !ok {
			return false
		}
	}
	return true
}

// read appends the namespace's objects to in.
func (w *namespaceWatch) read(in *Inputs) error {
	pods, err := w.pods.List(labels.Everything())
	if err != nil {
		return err
	}
	pools, err := w.pools.List(labels.Everything())
	if err != nil {
		return err
	}
	objectives, err := w.objectives.List(labels.Everything())
	if err != nil {
		return err
	}
	in.Pods = append(in.Pods, pods...)
	in.Pools = append(in.Pools, pools...)
	in.Objectives = append(in.Objectives, objectives...)
	for _, l := range []struct {
		lister cache.GenericLister
		dst    *[]*unstructured.Unstructured
	}{{w.routes, &in.Routes}, {w.services, &in.Backends}, {w.policies, &in.Policies}, {w.egBackends, &in.EGBackends}} {
		if l.lister == nil {
			continue
		}
		objs, err := l.lister.List(labels.Everything())
		if err != nil {
			return err
		}
		for _, o := range objs {
			if u, ok := o.(*unstructured.Unstructured); ok {
				*l.dst = append(*l.dst, u)
			}
		}
	}
	return nil
}

// specChanged ignores updates that only touch status or metadata other
// than the generation: the leader's own status writes must not cost a
// rebuild each.
func specChanged(old, cur any) bool {
	o, err1 := meta.Accessor(old)
	c, err2 := meta.Accessor(cur)
	return err1 != nil || err2 != nil || o.GetGeneration() != c.GetGeneration() || o.GetGeneration() == 0
}

// podChanged: only what endpoint selection reads (slimPod keeps just that).
func podChanged(old, cur any) bool {
	o, ok1 := old.(*corev1.Pod)
	c, ok2 := cur.(*corev1.Pod)
	if !ok1 || !ok2 {
		return true
	}
	return podReady(o) != podReady(c) || o.Status.PodIP != c.Status.PodIP ||
		!labels.Equals(o.Labels, c.Labels) || o.Annotations[ActivePortsAnnotation] != c.Annotations[ActivePortsAnnotation] ||
		(o.DeletionTimestamp == nil) != (c.DeletionTimestamp == nil)
}

// slimPod keeps only what endpoint selection reads, so a namespace of
// thousands of pods costs little memory: no spec, no managed fields.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone: kept as it is
	}
	slim := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp,
		},
		Status: corev1.PodStatus{PodIP: p.Status.PodIP},
	}
	if v, ok := p.Annotations[ActivePortsAnnotation]; ok {
		slim.Annotations = map[string]string{ActivePortsAnnotation: v}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			slim.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return slim, nil
}
