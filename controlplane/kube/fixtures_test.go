package kube_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

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

	"github.com/inflow-gateway/inflow/controlplane/kube"
	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/controlplane/local"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/config"
)

// await bounds waits for things not being measured: a loaded machine makes
// a test slow, not flaky.
const await = 20 * time.Second

var (
	routesGVR   = schema.GroupVersionResource{Group: "aigateway.envoyproxy.io", Version: "v1beta1", Resource: "aigatewayroutes"}
	routesV1a1  = schema.GroupVersionResource{Group: "aigateway.envoyproxy.io", Version: "v1alpha1", Resource: "aigatewayroutes"}
	servicesGVR = schema.GroupVersionResource{Group: "aigateway.envoyproxy.io", Version: "v1beta1", Resource: "aiservicebackends"}
	policiesGVR = schema.GroupVersionResource{Group: "aigateway.envoyproxy.io", Version: "v1beta1", Resource: "backendsecuritypolicies"}
	egBackends  = schema.GroupVersionResource{Group: "gateway.envoyproxy.io", Version: "v1alpha1", Resource: "backends"}
)

// fixture is one namespace of a shared API server, with clients.
type fixture struct {
	t    *testing.T
	ctx  context.Context
	rest *rest.Config
	ns   string
	kube kubernetes.Interface
	gie  gieclient.Interface
	dyn  dynamic.Interface
}

func newFixture(t *testing.T, c *kubetest.Cluster, ns string) *fixture {
	t.Helper()
	f := &fixture{t: t, ctx: t.Context(), rest: c.Config, ns: ns}
	f.kube = kubernetes.NewForConfigOrDie(c.Config)
	f.gie = gieclient.NewForConfigOrDie(c.Config)
	f.dyn = dynamic.NewForConfigOrDie(c.Config)
	if _, err := f.kube.CoreV1().Namespaces().Create(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return f
}

// pod creates a pod and sets its status as a kubelet would: IP and Ready.
func (f *fixture) pod(name, ip string, labels map[string]string, ready bool, annotations map[string]string) {
	f.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns, Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "vllm", Image: "vllm/vllm-openai"}}},
	}
	p, err := f.kube.CoreV1().Pods(f.ns).Create(f.ctx, p, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, Conditions: []corev1.PodCondition{readyCondition(ready)}}
	if _, err := f.kube.CoreV1().Pods(f.ns).UpdateStatus(f.ctx, p, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func readyCondition(ready bool) corev1.PodCondition {
	s := corev1.ConditionFalse
	if ready {
		s = corev1.ConditionTrue
	}
	return corev1.PodCondition{Type: corev1.PodReady, Status: s, LastTransitionTime: metav1.Now()}
}

// setReady flips a pod's Ready condition through the status subresource.
func (f *fixture) setReady(name string, ready bool) {
	f.t.Helper()
	p, err := f.kube.CoreV1().Pods(f.ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	p.Status.Conditions = []corev1.PodCondition{readyCondition(ready)}
	if _, err := f.kube.CoreV1().Pods(f.ns).UpdateStatus(f.ctx, p, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) updatePod(name string, edit func(*corev1.Pod)) {
	f.t.Helper()
	p, err := f.kube.CoreV1().Pods(f.ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	edit(p)
	if _, err := f.kube.CoreV1().Pods(f.ns).Update(f.ctx, p, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) deletePod(name string) {
	f.t.Helper()
	zero := int64(0)
	if err := f.kube.CoreV1().Pods(f.ns).Delete(f.ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) pool(name string, selector map[string]string, ports ...int32) {
	f.t.Helper()
	p := &giev1.InferencePool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns}}
	p.Spec.Selector.MatchLabels = map[giev1.LabelKey]giev1.LabelValue{}
	for k, v := range selector {
		p.Spec.Selector.MatchLabels[giev1.LabelKey(k)] = giev1.LabelValue(v)
	}
	for _, n := range ports {
		p.Spec.TargetPorts = append(p.Spec.TargetPorts, giev1.Port{Number: giev1.PortNumber(n)})
	}
	eppPort := giev1.Port{Number: 9002}
	p.Spec.EndpointPickerRef = giev1.EndpointPickerRef{Name: giev1.ObjectName(name + "-epp"), Port: &eppPort}
	if _, err := f.gie.InferenceV1().InferencePools(f.ns).Create(f.ctx, p, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) editPool(name string, edit func(*giev1.InferencePool)) {
	f.t.Helper()
	p, err := f.gie.InferenceV1().InferencePools(f.ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	edit(p)
	if _, err := f.gie.InferenceV1().InferencePools(f.ns).Update(f.ctx, p, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) objective(name, pool string, priority *int) {
	f.t.Helper()
	o := &giev1alpha2.InferenceObjective{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns}}
	o.Spec.Priority = priority
	o.Spec.PoolRef.Name = giev1alpha2.ObjectName(pool)
	o.Spec.PoolRef.Group = "inference.networking.k8s.io"
	o.Spec.PoolRef.Kind = "InferencePool"
	if _, err := f.gie.XInferenceV1alpha2().InferenceObjectives(f.ns).Create(f.ctx, o, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// create makes an unstructured object of gvr from a spec.
func (f *fixture) create(gvr schema.GroupVersionResource, kind, name string, spec map[string]any) *unstructured.Unstructured {
	f.t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvr.GroupVersion().String(), "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": f.ns},
		"spec":     spec,
	}}
	out, err := f.dyn.Resource(gvr).Namespace(f.ns).Create(f.ctx, u, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// modelRule is an AIGatewayRoute rule matching one model, to backendRefs.
func modelRule(model string, refs ...map[string]any) map[string]any {
	anyRefs := make([]any, len(refs))
	for i, r := range refs {
		anyRefs[i] = r
	}
	return map[string]any{
		"matches":     []any{map[string]any{"headers": []any{map[string]any{"type": "Exact", "name": "x-ai-eg-model", "value": model}}}},
		"backendRefs": anyRefs,
	}
}

func poolRef(name string) map[string]any {
	return map[string]any{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": name}
}

// route creates an AIGatewayRoute attached to Gateway "ai-gateway".
func (f *fixture) route(gvr schema.GroupVersionResource, name string, rules ...map[string]any) {
	f.t.Helper()
	anyRules := make([]any, len(rules))
	for i, r := range rules {
		anyRules[i] = r
	}
	f.create(gvr, "AIGatewayRoute", name, map[string]any{
		"parentRefs": []any{map[string]any{"name": "ai-gateway", "kind": "Gateway", "group": "gateway.networking.k8s.io"}},
		"rules":      anyRules,
	})
}

func (f *fixture) get(gvr schema.GroupVersionResource, name string) *unstructured.Unstructured {
	f.t.Helper()
	u, err := f.dyn.Resource(gvr).Namespace(f.ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		f.t.Fatal(err)
	}
	return u
}

// controlPlane starts inflow-controlplane in Kubernetes mode (in process,
// the packages the binary runs) with config extra appended to a file that
// watches f's namespace, and an ADS client that follows it as Envoy does.
type controlPlane struct {
	*local.Server
	envoy *xdstest.Envoy
	f     *fixture
}

func (f *fixture) controlPlane(extra string, election *kube.Election) *controlPlane {
	f.t.Helper()
	path := filepath.Join(f.t.TempDir(), "controlplane.yaml")
	cfg := "listeners: [{name: public, address: 127.0.0.1, port: 10000}]\nkubernetes:\n  namespaces: [" + f.ns + "]\n" + extra
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		f.t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := local.StartKubernetes(f.ctx, path, log, &local.Kubernetes{Rest: f.rest, Election: election})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			f.t.Errorf("control plane: %v", err)
		}
	})
	envoy, err := xdstest.Connect(srv.Addr, "envoy-"+f.ns)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = envoy.Close() })
	return &controlPlane{Server: srv, envoy: envoy, f: f}
}

// filterConfig is the filter config the listener carries, as the filter
// parses it: the spec as Envoy receives it.
func filterConfig(s *xdstest.State) (*config.Config, bool) {
	l, ok := s.Listeners["public"]
	if !ok {
		return nil, false
	}
	g, err := translator.GolangFilter(l, s.Extensions)
	if err != nil {
		return nil, false
	}
	c, err := config.FromAny(g.GetPluginConfig())
	if err != nil {
		return nil, false
	}
	return c, true
}

// await follows the ADS stream until the served filter config satisfies
// cond, failing with what it last saw.
func (cp *controlPlane) await(what string, cond func(*config.Config) bool) *config.Config {
	cp.f.t.Helper()
	var last *config.Config
	err := cp.envoy.Await(await, func(s *xdstest.State) bool {
		c, ok := filterConfig(s)
		if ok {
			last = c
		}
		return ok && cond(c)
	})
	if err != nil {
		cp.f.t.Fatalf("%s: %v; last filter config: %+v", what, err, last)
	}
	return last
}

func poolOf(c *config.Config, name string) *config.Pool {
	for i := range c.Pools {
		if c.Pools[i].Name == name {
			return &c.Pools[i]
		}
	}
	return nil
}

func modelOf(c *config.Config, name string) *config.Model {
	for i := range c.Models {
		if c.Models[i].Name == name {
			return &c.Models[i]
		}
	}
	return nil
}

// endpointsAre: the pool exists and has exactly these endpoints.
func endpointsAre(pool string, want ...string) func(*config.Config) bool {
	slices.Sort(want)
	return func(c *config.Config) bool {
		p := poolOf(c, pool)
		return p != nil && slices.Equal(p.Endpoints, want)
	}
}

// simulators starts one vLLM simulator per loopback address, all on one
// port (a pool's target port is the same for every pod), returning it.
func simulators(t *testing.T, model string, ips ...string) int32 {
	t.Helper()
	port := freePort(t)
	for _, ip := range ips {
		s, err := sim.Start(t.Context(), sim.Options{Model: model, Listen: net.JoinHostPort(ip, strconv.Itoa(int(port)))})
		if err != nil {
			t.Fatalf("simulator on %s: %v", ip, err)
		}
		t.Cleanup(func() { _ = s.Close() })
	}
	return port
}

func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

func ep(ip string, port int32) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }
