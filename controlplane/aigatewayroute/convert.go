// Package aigatewayroute turns the Envoy AI Gateway's AIGatewayRoutes into
// the HTTPRoutes Envoy Gateway translates, as the AI Gateway controller
// does, so that a user who swaps that controller for Inflow keeps their
// manifests: each AIGatewayRoute becomes the HTTPRoute of the same name
// and namespace, owned by it (ownerReferences, so Kubernetes deletes it
// with the route), updated with it, and deleted with it by the controller
// too (Controller). Envoy Gateway then translates the HTTPRoute, and
// Inflow's extension server (controlplane/envoygateway) binds its rules to
// their InferencePools.
//
// The AIGatewayRoute is read unstructured (its module is not available to
// us), in the wire form envoyproxy/ai-gateway v1.1.0 documents.
package aigatewayroute

import (
	"fmt"
	"maps"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// The AIGatewayRoute kind and what generated HTTPRoutes carry.
const (
	Group = "aigateway.envoyproxy.io"
	Kind  = "AIGatewayRoute"
	// ManagedByLabel marks the HTTPRoutes this package generates; the
	// controller only ever changes or deletes those.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "inflow-controlplane"
	// DefaultRequestTimeout is the AI Gateway's default for a rule without
	// timeouts (api/v1beta1 GetTimeoutsOrDefault), kept so routes behave
	// as before the switch.
	DefaultRequestTimeout gwapiv1.Duration = "60s"
	// rootPrefix is the AI Gateway controller's default --rootPrefix: every
	// generated match also matches this path prefix.
	rootPrefix = "/"

	inferencePoolGroup = "inference.networking.k8s.io"
	inferencePoolKind  = "InferencePool"
	// lastApplied is kubectl's own bookkeeping of the AIGatewayRoute: it
	// would mislead a kubectl apply of the HTTPRoute.
	lastApplied = "kubectl.kubernetes.io/last-applied-configuration"
)

// spec is the part of AIGatewayRoute.spec the HTTPRoute is made of.
type spec struct {
	ParentRefs []gwapiv1.ParentReference `json:"parentRefs"`
	// TargetRefs is v1alpha1's older form of parentRefs.
	TargetRefs []gwapiv1.ParentReference `json:"targetRefs"`
	Hostnames  []gwapiv1.Hostname        `json:"hostnames"`
	Rules      []rule                    `json:"rules"`
}

type rule struct {
	Name    *gwapiv1.SectionName `json:"name"`
	Matches []struct {
		Headers []gwapiv1.HTTPHeaderMatch `json:"headers"`
	} `json:"matches"`
	BackendRefs []backendRef               `json:"backendRefs"`
	Timeouts    *gwapiv1.HTTPRouteTimeouts `json:"timeouts"`
}

type backendRef struct {
	Name      gwapiv1.ObjectName `json:"name"`
	Namespace *gwapiv1.Namespace `json:"namespace"`
	Group     *gwapiv1.Group     `json:"group"`
	Kind      *gwapiv1.Kind      `json:"kind"`
	Weight    *int32             `json:"weight"`
}

func (b backendRef) isInferencePool() bool {
	return b.Group != nil && *b.Group == inferencePoolGroup && b.Kind != nil && *b.Kind == inferencePoolKind
}

// Result is the HTTPRoute of one AIGatewayRoute and what it leaves out.
type Result struct {
	Route *gwapiv1.HTTPRoute
	// Problems name the parts of the AIGatewayRoute not served ("rules[1]: ...").
	Problems []string
}

// HTTPRoute is the HTTPRoute u (an AIGatewayRoute) becomes. Rules to an
// InferencePool keep their matches (x-ai-eg-model header matches, which
// the filter's header satisfies), each also matching the path prefix "/",
// their backendRefs with explicit namespaces and weights, and their
// timeouts (or the AI Gateway's 60 s default). Rules to AIServiceBackends
// are left out and reported: in Envoy Gateway mode Inflow does not
// translate providers or inject their keys, so such a route would reach
// the provider unauthenticated.
func HTTPRoute(u *unstructured.Unstructured) (*Result, error) {
	raw, ok := u.Object["spec"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s %s/%s has no spec", Kind, u.GetNamespace(), u.GetName())
	}
	var s spec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &s); err != nil {
		return nil, fmt.Errorf("%s %s/%s: %w", Kind, u.GetNamespace(), u.GetName(), err)
	}
	parents := s.ParentRefs
	if len(parents) == 0 {
		parents = s.TargetRefs
	}
	res := &Result{Route: &gwapiv1.HTTPRoute{
		TypeMeta:   metav1.TypeMeta{APIVersion: gwapiv1.GroupVersion.String(), Kind: "HTTPRoute"},
		ObjectMeta: objectMeta(u),
		Spec: gwapiv1.HTTPRouteSpec{
			CommonRouteSpec: gwapiv1.CommonRouteSpec{ParentRefs: parents},
			Hostnames:       s.Hostnames,
		},
	}}
	for i, r := range s.Rules {
		hr, problem := httpRouteRule(u.GetNamespace(), r)
		if problem != "" {
			res.Problems = append(res.Problems, fmt.Sprintf("rules[%d]: %s", i, problem))
			continue
		}
		res.Route.Spec.Rules = append(res.Route.Spec.Rules, hr)
	}
	return res, nil
}

func httpRouteRule(namespace string, r rule) (gwapiv1.HTTPRouteRule, string) {
	out := gwapiv1.HTTPRouteRule{Name: r.Name, Timeouts: r.Timeouts}
	if out.Timeouts == nil {
		out.Timeouts = &gwapiv1.HTTPRouteTimeouts{}
	} else {
		t := *out.Timeouts
		out.Timeouts = &t
	}
	if out.Timeouts.Request == nil {
		d := DefaultRequestTimeout
		out.Timeouts.Request = &d
	}
	for _, m := range r.Matches {
		prefix, value := gwapiv1.PathMatchPathPrefix, rootPrefix
		out.Matches = append(out.Matches, gwapiv1.HTTPRouteMatch{
			Headers: m.Headers,
			Path:    &gwapiv1.HTTPPathMatch{Type: &prefix, Value: &value},
		})
	}
	if len(r.BackendRefs) == 0 {
		return out, "no backendRefs"
	}
	for _, b := range r.BackendRefs {
		if !b.isInferencePool() {
			return out, fmt.Sprintf("backend %s is an AIServiceBackend: Inflow serves only InferencePools in Envoy Gateway mode; the rule is left out", b.Name)
		}
		ns := gwapiv1.Namespace(namespace)
		if b.Namespace != nil {
			ns = *b.Namespace
		}
		out.BackendRefs = append(out.BackendRefs, gwapiv1.HTTPBackendRef{BackendRef: gwapiv1.BackendRef{
			BackendObjectReference: gwapiv1.BackendObjectReference{Group: b.Group, Kind: b.Kind, Name: b.Name, Namespace: &ns},
			Weight:                 b.Weight,
		}})
	}
	return out, ""
}

// objectMeta: the route's name, namespace, labels and annotations (as the
// AI Gateway copies them), the managed-by label and the owner reference.
func objectMeta(u *unstructured.Unstructured) metav1.ObjectMeta {
	labels := maps.Clone(u.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	labels[ManagedByLabel] = ManagedBy
	annotations := maps.Clone(u.GetAnnotations())
	delete(annotations, lastApplied)
	yes := true
	return metav1.ObjectMeta{
		Name: u.GetName(), Namespace: u.GetNamespace(), Labels: labels, Annotations: annotations,
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: u.GetAPIVersion(), Kind: Kind, Name: u.GetName(), UID: u.GetUID(),
			Controller: &yes, BlockOwnerDeletion: &yes,
		}},
	}
}

// OwnedBy reports whether route is the HTTPRoute generated for the
// AIGatewayRoute owner: one this package made (the managed-by label and the
// owner reference, matched by UID when owner is given: a route of a deleted
// and re-created AIGatewayRoute of the same name is not its), or one the
// AI Gateway controller made for this very AIGatewayRoute (its controller
// reference, same UID), which Inflow takes over when it replaces that
// controller.
func OwnedBy(route *unstructured.Unstructured, owner *unstructured.Unstructured) bool {
	ours := route.GetLabels()[ManagedByLabel] == ManagedBy
	for _, ref := range route.GetOwnerReferences() {
		if ref.Kind != Kind || ref.Controller == nil || !*ref.Controller || ref.Name != route.GetName() {
			continue
		}
		switch {
		case owner == nil:
			return ours
		case ref.UID == owner.GetUID():
			return true
		}
	}
	return false
}
