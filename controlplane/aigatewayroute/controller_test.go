package aigatewayroute

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/internal/poll"
)

var routesV1beta1 = schema.GroupVersionResource{Group: Group, Version: "v1beta1", Resource: "aigatewayroutes"}

type env struct {
	t   *testing.T
	dyn dynamic.Interface
	ns  string
	c   *Controller
}

// start runs the controller on a real API server with the Gateway API and
// (stand-in) AI Gateway CRDs, watching namespace "llm".
func start(t *testing.T) *env {
	cluster := kubetest.StartWith(t, kubetest.GatewayAPICRDs(t))
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "llm"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The controller runs as a user with exactly the shipped Roles: the
	// control plane's (it reads AIGatewayRoutes) and this mode's.
	root := kubetest.Root(t)
	cluster.BindShipped(t, "llm", filepath.Join(root, "build/k8s/controlplane/rbac.yaml"), "cp")
	as, err := dynamic.NewForConfig(cluster.BindShipped(t, "llm", filepath.Join(root, "build/k8s/envoy-gateway/rbac.yaml"), "cp"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dyn: dyn, ns: "llm", c: &Controller{
		Client: as, Routes: routesV1beta1, Namespaces: []string{"llm"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	return e
}

func (e *env) apply(name string, rules ...any) *unstructured.Unstructured {
	e.t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Group + "/v1beta1", "kind": Kind,
		"metadata": map[string]any{"name": name, "namespace": e.ns, "labels": map[string]any{"team": "a"}},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"name": "inflow"}},
			"rules":      rules,
		},
	}}
	out, err := e.dyn.Resource(routesV1beta1).Namespace(e.ns).Apply(context.Background(), name, u, metav1.ApplyOptions{FieldManager: "test", Force: true})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) httpRoute(name string) (*unstructured.Unstructured, error) {
	return e.dyn.Resource(HTTPRoutes).Namespace(e.ns).Get(context.Background(), name, metav1.GetOptions{})
}

func modelRule(model, pool string) map[string]any {
	return map[string]any{
		"matches":     []any{map[string]any{"headers": []any{map[string]any{"type": "Exact", "name": "x-ai-eg-model", "value": model}}}},
		"backendRefs": []any{map[string]any{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": pool}},
	}
}

// models are the x-ai-eg-model values the HTTPRoute's rules match.
func models(r *unstructured.Unstructured) []string {
	var out []string
	rules, _, _ := unstructured.NestedSlice(r.Object, "spec", "rules")
	for _, rule := range rules {
		matches, _, _ := unstructured.NestedSlice(rule.(map[string]any), "matches")
		for _, m := range matches {
			headers, _, _ := unstructured.NestedSlice(m.(map[string]any), "headers")
			for _, h := range headers {
				out = append(out, h.(map[string]any)["value"].(string))
			}
		}
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Eventually(t, what, cond)
}

// TestControllerOnARealAPIServer: the HTTPRoute appears with the
// AIGatewayRoute (accepted by the API server's own HTTPRoute validation),
// owned by it, follows its edits, is put back after a hand edit, goes when
// it goes, and an HTTPRoute the controller did not generate is left alone.
func TestControllerOnARealAPIServer(t *testing.T) {
	e := start(t)
	owner := e.apply("llm", modelRule("llama", "llama"), map[string]any{
		"matches":     []any{map[string]any{"headers": []any{map[string]any{"name": "x-ai-eg-model", "value": "gpt"}}}},
		"backendRefs": []any{map[string]any{"name": "openai"}},
	})
	var got *unstructured.Unstructured
	eventually(t, "the HTTPRoute to be created", func() bool {
		r, err := e.httpRoute("llm")
		got = r
		return err == nil
	})
	if refs := got.GetOwnerReferences(); len(refs) != 1 || refs[0].UID != owner.GetUID() || refs[0].Controller == nil || !*refs[0].Controller {
		t.Errorf("owner references %+v, want the AIGatewayRoute %s as controller", refs, owner.GetUID())
	}
	if got.GetLabels()["team"] != "a" || got.GetLabels()[ManagedByLabel] != ManagedBy {
		t.Errorf("labels %v", got.GetLabels())
	}
	if m := models(got); strings.Join(m, ",") != "llama" {
		t.Errorf("the HTTPRoute matches %v, want llama only (the AIServiceBackend rule is left out)", m)
	}
	// Reported once the apply returned, a moment after the route appeared.
	eventually(t, "the AIServiceBackend rule to be reported", func() bool {
		p := e.c.Problems()[types.NamespacedName{Namespace: "llm", Name: "llm"}]
		return len(p) == 1 && strings.Contains(p[0], "AIServiceBackend")
	})

	e.apply("llm", modelRule("llama", "llama"), modelRule("qwen", "qwen"))
	eventually(t, "the HTTPRoute to follow the edit", func() bool {
		r, err := e.httpRoute("llm")
		return err == nil && strings.Join(models(r), ",") == "llama,qwen"
	})

	// A hand edit of a generated field is put back.
	r, _ := e.httpRoute("llm")
	if err := unstructured.SetNestedSlice(r.Object, []any{}, "spec", "hostnames"); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedSlice(r.Object, []any{map[string]any{"backendRefs": []any{map[string]any{"name": "elsewhere", "port": int64(80)}}}}, "spec", "rules"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.dyn.Resource(HTTPRoutes).Namespace(e.ns).Update(context.Background(), r, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the controller to put the rules back", func() bool {
		r, err := e.httpRoute("llm")
		return err == nil && strings.Join(models(r), ",") == "llama,qwen"
	})

	// Someone else's HTTPRoute of the same name as a new AIGatewayRoute.
	mine := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": "mine", "namespace": e.ns},
		"spec": map[string]any{"parentRefs": []any{map[string]any{"name": "inflow"}},
			"rules": []any{map[string]any{"backendRefs": []any{map[string]any{"name": "svc", "port": int64(80)}}}}},
	}}
	if _, err := e.dyn.Resource(HTTPRoutes).Namespace(e.ns).Create(context.Background(), mine, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.apply("mine", modelRule("m", "llama"))
	eventually(t, "the clash to be reported", func() bool {
		p := e.c.Problems()[types.NamespacedName{Namespace: "llm", Name: "mine"}]
		return len(p) == 1 && strings.Contains(p[0], "not generated")
	})
	if r, err := e.httpRoute("mine"); err != nil || len(models(r)) != 0 || len(r.GetOwnerReferences()) != 0 {
		t.Errorf("the user's HTTPRoute was changed: %v, %v", r, err)
	}

	// Deleted with the AIGatewayRoute (the garbage collector would too,
	// but envtest runs none: this is the controller's own delete).
	if err := e.dyn.Resource(routesV1beta1).Namespace(e.ns).Delete(context.Background(), "llm", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the HTTPRoute to be deleted", func() bool {
		_, err := e.httpRoute("llm")
		return apierrors.IsNotFound(err)
	})
	if err := e.dyn.Resource(routesV1beta1).Namespace(e.ns).Delete(context.Background(), "mine", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := e.httpRoute("mine"); err != nil {
		t.Errorf("deleting the AIGatewayRoute deleted a user's HTTPRoute of its name: %v", err)
	}
}
