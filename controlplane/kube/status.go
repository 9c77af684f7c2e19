package kube

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	giev1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
)

// Condition types and reasons Inflow writes. Route conditions follow the
// AI Gateway's (Accepted, ResolvedRefs); pool conditions are the
// Inference Extension's.
const (
	condAccepted     = "Accepted"
	condResolvedRefs = "ResolvedRefs"
	// condNotAccepted is the AI Gateway's negative twin of Accepted;
	// Inflow states acceptance with Accepted alone and drops it.
	condNotAccepted = "NotAccepted"

	reasonAccepted      = "Accepted"
	reasonResolvedRefs  = "ResolvedRefs"
	reasonPartially     = "PartiallyAccepted"
	reasonNothingServed = "NoServableRules"

	// maxConditionMessage is metav1.Condition's limit.
	maxConditionMessage = 32768
	// statusRetry is how soon a failed status write is tried again.
	statusRetry = time.Second
)

// statusWriter writes each build's reports to the objects' status and
// raises Events for what is not served. Only the leader runs it.
type statusWriter struct {
	c       *clients
	watches []*namespaceWatch
	log     *slog.Logger

	latest atomic.Pointer[Result]
	kick   chan struct{}
	// writes counts status updates sent (tests check only the leader
	// writes).
	writes atomic.Uint64
	// warned is the last Event message per object, so an unchanged
	// problem is not re-announced on every build.
	warned map[string]string
}

func newStatusWriter(c *clients, watches []*namespaceWatch, log *slog.Logger) *statusWriter {
	return &statusWriter{c: c, watches: watches, log: log, kick: make(chan struct{}, 1), warned: map[string]string{}}
}

// update hands the writer a new build; it never blocks the xDS path.
func (w *statusWriter) update(res *Result) {
	w.latest.Store(res)
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// StatusWrites is how many status updates this replica has sent.
func (s *Source) StatusWrites() uint64 { return s.status.writes.Load() }

// run writes status while ctx (leadership) lasts.
func (w *statusWriter) run(ctx context.Context) {
	scheme := runtime.NewScheme()
	if err := giev1.Install(scheme); err != nil {
		w.log.Error("status: scheme", "err", err)
		return
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: w.c.kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "inflow-controlplane"})
	w.warned = map[string]string{} // a new leader announces current problems once
	if w.latest.Load() != nil {
		w.update(w.latest.Load())
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
			if err := w.write(ctx, w.latest.Load(), recorder); err != nil && ctx.Err() == nil {
				// A conflict (the object moved on since the informer saw
				// it) or a passing API error: try again shortly with the
				// then-current objects, even if nothing else changes.
				w.log.Warn("status update failed; retrying", "in", statusRetry, "err", err)
				time.AfterFunc(statusRetry, func() { w.update(w.latest.Load()) })
			}
		}
	}
}

func (w *statusWriter) write(ctx context.Context, res *Result, rec record.EventRecorder) error {
	var errs []string
	for _, ns := range w.watches {
		if ns.routes != nil {
			objs, err := ns.routes.List(labels.Everything())
			if err != nil {
				return err
			}
			for _, o := range objs {
				u := o.(*unstructured.Unstructured)
				rep, ok := res.Routes[types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}]
				if !ok {
					continue // another Gateway's route
				}
				if err := w.writeRoute(ctx, u, rep, rec); err != nil {
					errs = append(errs, err.Error())
				}
			}
		}
		pools, err := ns.pools.List(labels.Everything())
		if err != nil {
			return err
		}
		for _, p := range pools {
			if err := w.writePool(ctx, p, res.Pools[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}], rec); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// routeConditions states what became of a route.
func routeConditions(rep *RouteReport) []metav1.Condition {
	accepted := metav1.Condition{Type: condAccepted, Status: metav1.ConditionTrue, Reason: reasonAccepted,
		ObservedGeneration: rep.Generation, Message: fmt.Sprintf("%d rule(s) served", rep.Served)}
	problems := append(append([]string(nil), rep.Problems...), rep.Unresolved...)
	switch {
	case rep.Served == 0:
		accepted.Status, accepted.Reason = metav1.ConditionFalse, reasonNothingServed
		accepted.Message = "nothing served: " + strings.Join(problems, "; ")
	case len(problems) > 0:
		accepted.Reason = reasonPartially
		accepted.Message += "; not served: " + strings.Join(problems, "; ")
	}
	resolved := metav1.Condition{Type: condResolvedRefs, Status: metav1.ConditionTrue, Reason: reasonResolvedRefs,
		ObservedGeneration: rep.Generation, Message: "all backend references resolved"}
	if len(rep.Unresolved) > 0 {
		resolved.Status, resolved.Reason = metav1.ConditionFalse, rep.UnresolvedReason
		resolved.Message = strings.Join(rep.Unresolved, "; ")
	}
	return []metav1.Condition{capMessage(accepted), capMessage(resolved)}
}

func capMessage(c metav1.Condition) metav1.Condition {
	if len(c.Message) > maxConditionMessage {
		c.Message = c.Message[:maxConditionMessage-3] + "..."
	}
	return c
}

// merge sets want on have, keeping transition times of unchanged ones.
func merge(have []metav1.Condition, want []metav1.Condition, drop ...string) []metav1.Condition {
	out := append([]metav1.Condition(nil), have...)
	for _, t := range drop {
		meta.RemoveStatusCondition(&out, t)
	}
	for _, c := range want {
		meta.SetStatusCondition(&out, c)
	}
	return out
}

func (w *statusWriter) writeRoute(ctx context.Context, u *unstructured.Unstructured, rep *RouteReport, rec record.EventRecorder) error {
	have := conditionsOf(u)
	want := merge(have, routeConditions(rep), condNotAccepted)
	key := "route/" + u.GetNamespace() + "/" + u.GetName()
	w.warn(rec, u, key, rep)
	if equality.Semantic.DeepEqual(have, want) {
		return nil
	}
	conds := make([]any, 0, len(want))
	for _, c := range want {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&c)
		if err != nil {
			return err
		}
		conds = append(conds, m)
	}
	cp := u.DeepCopy()
	if err := unstructured.SetNestedSlice(cp.Object, conds, "status", "conditions"); err != nil {
		return err
	}
	gvr := w.c.routes
	if _, err := w.c.dynamic.Resource(gvr).Namespace(u.GetNamespace()).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("AIGatewayRoute %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	w.writes.Add(1)
	return nil
}

// conditionsOf reads status.conditions of an unstructured object; entries
// that do not decode are dropped (and so rewritten).
func conditionsOf(u *unstructured.Unstructured) []metav1.Condition {
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var out []metav1.Condition
	for _, r := range raw {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		var c metav1.Condition
		if runtime.DefaultUnstructuredConverter.FromUnstructured(m, &c) == nil {
			out = append(out, c)
		}
	}
	return out
}

// warn raises a Warning Event when an object's problems change.
func (w *statusWriter) warn(rec record.EventRecorder, obj runtime.Object, key string, rep *RouteReport) {
	msg := strings.Join(append(append([]string(nil), rep.Problems...), rep.Unresolved...), "; ")
	if w.warned[key] == msg {
		return
	}
	w.warned[key] = msg
	if msg == "" {
		return
	}
	reason := reasonPartially
	if rep.Served == 0 {
		reason = reasonNothingServed
	}
	if len(rep.Unresolved) > 0 {
		reason = rep.UnresolvedReason
	}
	rec.Event(obj, corev1.EventTypeWarning, reason, capMessage(metav1.Condition{Message: msg}).Message)
}

// poolParents is the pool's status.parents with Inflow's entries replaced
// by rep's (nil rep: the pool is not used, so Inflow's entries go).
func poolParents(p *giev1.InferencePool, rep *PoolReport) []giev1.ParentStatus {
	var out []giev1.ParentStatus
	ours := map[types.NamespacedName]giev1.ParentStatus{}
	for _, ps := range p.Status.Parents {
		if ps.ControllerName == ControllerName {
			ours[types.NamespacedName{Namespace: string(ps.ParentRef.Namespace), Name: string(ps.ParentRef.Name)}] = ps
			continue
		}
		out = append(out, ps)
	}
	if rep == nil {
		return out
	}
	for _, gw := range rep.Parents {
		prev := ours[gw]
		group := giev1.Group(gatewayAPIGroup)
		accepted := metav1.Condition{Type: string(giev1.InferencePoolConditionAccepted), Status: metav1.ConditionTrue,
			Reason: string(giev1.InferencePoolReasonAccepted), ObservedGeneration: rep.Generation,
			// No endpoint count: it would turn every pod flip into a
			// status write.
			Message: "served by Inflow"}
		if rep.Problem != "" {
			accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse,
				string(giev1.InferencePoolReasonNotSupportedByParent), rep.Problem
		}
		resolved := metav1.Condition{Type: string(giev1.InferencePoolConditionResolvedRefs), Status: metav1.ConditionTrue,
			Reason: string(giev1.InferencePoolReasonResolvedRefs), ObservedGeneration: rep.Generation,
			Message: "Inflow picks endpoints in Envoy; endpointPickerRef is not used"}
		out = append(out, giev1.ParentStatus{
			ParentRef:      giev1.ParentReference{Group: &group, Kind: kindGateway, Namespace: giev1.Namespace(gw.Namespace), Name: giev1.ObjectName(gw.Name)},
			ControllerName: ControllerName,
			Conditions:     merge(prev.Conditions, []metav1.Condition{capMessage(accepted), capMessage(resolved)}),
		})
	}
	return out
}

func (w *statusWriter) writePool(ctx context.Context, p *giev1.InferencePool, rep *PoolReport, rec record.EventRecorder) error {
	want := poolParents(p, rep)
	key := "pool/" + p.Namespace + "/" + p.Name
	if rep != nil && rep.Problem != "" && w.warned[key] != rep.Problem {
		w.warned[key] = rep.Problem
		rec.Event(p, corev1.EventTypeWarning, rep.Reason, rep.Problem)
	} else if rep == nil || rep.Problem == "" {
		delete(w.warned, key)
	}
	if equality.Semantic.DeepEqual(p.Status.Parents, want) {
		return nil
	}
	cp := p.DeepCopy()
	cp.Status.Parents = want
	if _, err := w.c.gie.InferenceV1().InferencePools(p.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("InferencePool %s/%s: %w", p.Namespace, p.Name, err)
	}
	w.writes.Add(1)
	return nil
}
