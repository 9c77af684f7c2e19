package kubetest

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	giev1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	giev1alpha2 "sigs.k8s.io/gateway-api-inference-extension/apix/v1alpha2"
	gieclient "sigs.k8s.io/gateway-api-inference-extension/client-go/clientset/versioned"
)

// The resources of the kinds Inflow reads unstructured.
var (
	RoutesGVR       = schema.GroupVersionResource{Group: "aigateway.envoyproxy.io", Version: "v1beta1", Resource: "aigatewayroutes"}
	RoutesV1Alpha1  = schema.GroupVersionResource{Group: "aigateway.envoyproxy.io", Version: "v1alpha1", Resource: "aigatewayroutes"}
	ServicesGVR     = schema.GroupVersionResource{Group: "aigateway.envoyproxy.io", Version: "v1beta1", Resource: "aiservicebackends"}
	PoliciesGVR     = schema.GroupVersionResource{Group: "aigateway.envoyproxy.io", Version: "v1beta1", Resource: "backendsecuritypolicies"}
	EGBackendsGVR   = schema.GroupVersionResource{Group: "gateway.envoyproxy.io", Version: "v1alpha1", Resource: "backends"}
	inferenceGroup  = "inference.networking.k8s.io"
	modelHeader     = "x-ai-eg-model"
	defaultGateway  = "ai-gateway"
	gatewayAPIGroup = "gateway.networking.k8s.io"
)

// Namespace is one namespace of a test cluster and the clients that fill
// it the way users' manifests and kubelets do. Every method fails T on an
// API error.
type Namespace struct {
	T    testing.TB
	Ctx  context.Context
	Rest *rest.Config
	Name string
	Kube kubernetes.Interface
	GIE  gieclient.Interface
	Dyn  dynamic.Interface
}

// Namespace creates namespace name in c.
func (c *Cluster) Namespace(t testing.TB, name string) *Namespace {
	t.Helper()
	n := &Namespace{T: t, Ctx: t.Context(), Rest: c.Config, Name: name,
		Kube: kubernetes.NewForConfigOrDie(c.Config), GIE: gieclient.NewForConfigOrDie(c.Config), Dyn: dynamic.NewForConfigOrDie(c.Config)}
	if _, err := n.Kube.CoreV1().Namespaces().Create(n.Ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return n
}

// Pod creates a pod and sets its status as a kubelet would: IP and Ready.
func (n *Namespace) Pod(name, ip string, labels map[string]string, ready bool, annotations map[string]string) {
	n.T.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: n.Name, Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "vllm", Image: "vllm/vllm-openai"}}},
	}
	p, err := n.Kube.CoreV1().Pods(n.Name).Create(n.Ctx, p, metav1.CreateOptions{})
	if err != nil {
		n.T.Fatal(err)
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, Conditions: []corev1.PodCondition{ReadyCondition(ready)}}
	if _, err := n.Kube.CoreV1().Pods(n.Name).UpdateStatus(n.Ctx, p, metav1.UpdateOptions{}); err != nil {
		n.T.Fatal(err)
	}
}

// ReadyCondition is a pod's Ready condition, as a kubelet writes it.
func ReadyCondition(ready bool) corev1.PodCondition {
	s := corev1.ConditionFalse
	if ready {
		s = corev1.ConditionTrue
	}
	return corev1.PodCondition{Type: corev1.PodReady, Status: s, LastTransitionTime: metav1.Now()}
}

// SetReady flips a pod's Ready condition through the status subresource.
func (n *Namespace) SetReady(name string, ready bool) {
	n.T.Helper()
	p, err := n.Kube.CoreV1().Pods(n.Name).Get(n.Ctx, name, metav1.GetOptions{})
	if err != nil {
		n.T.Fatal(err)
	}
	p.Status.Conditions = []corev1.PodCondition{ReadyCondition(ready)}
	if _, err := n.Kube.CoreV1().Pods(n.Name).UpdateStatus(n.Ctx, p, metav1.UpdateOptions{}); err != nil {
		n.T.Fatal(err)
	}
}

// UpdatePod edits a pod's metadata or spec.
func (n *Namespace) UpdatePod(name string, edit func(*corev1.Pod)) {
	n.T.Helper()
	p, err := n.Kube.CoreV1().Pods(n.Name).Get(n.Ctx, name, metav1.GetOptions{})
	if err != nil {
		n.T.Fatal(err)
	}
	edit(p)
	if _, err := n.Kube.CoreV1().Pods(n.Name).Update(n.Ctx, p, metav1.UpdateOptions{}); err != nil {
		n.T.Fatal(err)
	}
}

// DeletePod deletes a pod at once (grace period 0).
func (n *Namespace) DeletePod(name string) {
	n.T.Helper()
	zero := int64(0)
	if err := n.Kube.CoreV1().Pods(n.Name).Delete(n.Ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		n.T.Fatal(err)
	}
}

// Pool creates an InferencePool selecting selector at ports, with an
// endpoint picker reference as users' pools have (Inflow does not use it).
func (n *Namespace) Pool(name string, selector map[string]string, ports ...int32) {
	n.T.Helper()
	p := &giev1.InferencePool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: n.Name}}
	p.Spec.Selector.MatchLabels = map[giev1.LabelKey]giev1.LabelValue{}
	for k, v := range selector {
		p.Spec.Selector.MatchLabels[giev1.LabelKey(k)] = giev1.LabelValue(v)
	}
	for _, port := range ports {
		p.Spec.TargetPorts = append(p.Spec.TargetPorts, giev1.Port{Number: giev1.PortNumber(port)})
	}
	eppPort := giev1.Port{Number: 9002}
	p.Spec.EndpointPickerRef = giev1.EndpointPickerRef{Name: giev1.ObjectName(name + "-epp"), Port: &eppPort}
	if _, err := n.GIE.InferenceV1().InferencePools(n.Name).Create(n.Ctx, p, metav1.CreateOptions{}); err != nil {
		n.T.Fatal(err)
	}
}

// EditPool edits an InferencePool's spec.
func (n *Namespace) EditPool(name string, edit func(*giev1.InferencePool)) {
	n.T.Helper()
	p, err := n.GIE.InferenceV1().InferencePools(n.Name).Get(n.Ctx, name, metav1.GetOptions{})
	if err != nil {
		n.T.Fatal(err)
	}
	edit(p)
	if _, err := n.GIE.InferenceV1().InferencePools(n.Name).Update(n.Ctx, p, metav1.UpdateOptions{}); err != nil {
		n.T.Fatal(err)
	}
}

// Objective creates an InferenceObjective of pool; nil priority is unset.
func (n *Namespace) Objective(name, pool string, priority *int) {
	n.T.Helper()
	o := &giev1alpha2.InferenceObjective{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: n.Name}}
	o.Spec.Priority = priority
	o.Spec.PoolRef.Name = giev1alpha2.ObjectName(pool)
	o.Spec.PoolRef.Group = giev1alpha2.Group(inferenceGroup)
	o.Spec.PoolRef.Kind = "InferencePool"
	if _, err := n.GIE.XInferenceV1alpha2().InferenceObjectives(n.Name).Create(n.Ctx, o, metav1.CreateOptions{}); err != nil {
		n.T.Fatal(err)
	}
}

// Create makes an unstructured object of gvr from a spec.
func (n *Namespace) Create(gvr schema.GroupVersionResource, kind, name string, spec map[string]any) *unstructured.Unstructured {
	n.T.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvr.GroupVersion().String(), "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": n.Name},
		"spec":     spec,
	}}
	out, err := n.Dyn.Resource(gvr).Namespace(n.Name).Create(n.Ctx, u, metav1.CreateOptions{})
	if err != nil {
		n.T.Fatal(err)
	}
	return out
}

// EditSpec replaces the spec of an unstructured object with what edit
// makes of it.
func (n *Namespace) EditSpec(gvr schema.GroupVersionResource, name string, edit func(spec map[string]any)) {
	n.T.Helper()
	u, err := n.Dyn.Resource(gvr).Namespace(n.Name).Get(n.Ctx, name, metav1.GetOptions{})
	if err != nil {
		n.T.Fatal(err)
	}
	spec, _ := u.Object["spec"].(map[string]any)
	edit(spec)
	if _, err := n.Dyn.Resource(gvr).Namespace(n.Name).Update(n.Ctx, u, metav1.UpdateOptions{}); err != nil {
		n.T.Fatal(err)
	}
}

// Route creates an AIGatewayRoute attached to Gateway "ai-gateway".
func (n *Namespace) Route(gvr schema.GroupVersionResource, name string, rules ...map[string]any) {
	n.T.Helper()
	n.Create(gvr, "AIGatewayRoute", name, RouteSpec(rules...))
}

// RouteSpec is an AIGatewayRoute spec attached to Gateway "ai-gateway".
func RouteSpec(rules ...map[string]any) map[string]any {
	anyRules := make([]any, len(rules))
	for i, r := range rules {
		anyRules[i] = r
	}
	return map[string]any{
		"parentRefs": []any{map[string]any{"name": defaultGateway, "kind": "Gateway", "group": gatewayAPIGroup}},
		"rules":      anyRules,
	}
}

// Get reads an unstructured object; nil when it does not exist.
func (n *Namespace) Get(gvr schema.GroupVersionResource, name string) *unstructured.Unstructured {
	n.T.Helper()
	u, err := n.Dyn.Resource(gvr).Namespace(n.Name).Get(n.Ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		n.T.Fatal(err)
	}
	return u
}

// RouteConditions are the status conditions of AIGatewayRoute name.
func (n *Namespace) RouteConditions(name string) []metav1.Condition {
	n.T.Helper()
	u := n.Get(RoutesGVR, name)
	if u == nil {
		return nil
	}
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var out []metav1.Condition
	for _, r := range raw {
		m, _ := r.(map[string]any)
		c := metav1.Condition{}
		c.Type, _ = m["type"].(string)
		s, _ := m["status"].(string)
		c.Status = metav1.ConditionStatus(s)
		c.Reason, _ = m["reason"].(string)
		c.Message, _ = m["message"].(string)
		out = append(out, c)
	}
	return out
}

// FindCondition is the condition of type typ, or nil.
func FindCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// ModelRule is an AIGatewayRoute rule matching one model, to refs.
func ModelRule(model string, refs ...map[string]any) map[string]any {
	anyRefs := make([]any, len(refs))
	for i, r := range refs {
		anyRefs[i] = r
	}
	return map[string]any{
		"matches":     []any{map[string]any{"headers": []any{map[string]any{"type": "Exact", "name": modelHeader, "value": model}}}},
		"backendRefs": anyRefs,
	}
}

// PoolRef is a backendRef to InferencePool name.
func PoolRef(name string) map[string]any {
	return map[string]any{"group": inferenceGroup, "kind": "InferencePool", "name": name}
}
