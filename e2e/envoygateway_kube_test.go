package e2e

import (
	"context"
	"errors"
	"fmt"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/inflow-gateway/inflow/controlplane/aigatewayroute"
	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/controlplane/local"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/e2e/egrun"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/internal/poll"
)

const egModel = "llama-3.1-8b-instruct"

// egKubeStack is the Envoy Gateway mode on a real API server: the
// Kubernetes source reads the InferencePool and its pods, the controller
// writes the AIGatewayRoute's HTTPRoute, and the real Envoy Gateway (File
// provider: its Kubernetes provider needs its certificates at /certs,
// internal/xds/runner/runner.go) translates that HTTPRoute.
type egKubeStack struct {
	cp        *local.Server
	eg        *egrun.EnvoyGateway
	httpRoute *unstructured.Unstructured
	endpoints []string
}

func startEGKubeStack(t *testing.T) *egKubeStack {
	t.Helper()
	bin := envoyGatewayBinary(t)
	cluster := kubetest.StartWith(t, kubetest.GatewayAPICRDs(t))
	dyn := dynamic.NewForConfigOrDie(cluster.Config)
	kc := kubernetes.NewForConfigOrDie(cluster.Config)

	ips := []string{"127.0.0.61", "127.0.0.62"}
	port := int(kubetest.Simulators(t, egModel, ips...))
	objs := strings.ReplaceAll(string(repoFile(t, "e2e/testdata/envoygateway/kubernetes.yaml")), "number: 8000", "number: "+strconv.Itoa(port))
	var pool string
	for _, doc := range strings.Split(objs, "\n---\n") {
		u := createObject(t, dyn, doc)
		if u.GetKind() == "InferencePool" {
			pool = doc
		}
	}
	st := &egKubeStack{}
	for i, ip := range ips {
		kubePod(t, kc, fmt.Sprintf("llama-%d", i), ip, map[string]string{"app": "vllm-llama"})
		st.endpoints = append(st.endpoints, net.JoinHostPort(ip, strconv.Itoa(port)))
	}

	path := filepath.Join(t.TempDir(), "inflow.yaml")
	if err := os.WriteFile(path, []byte("envoy_gateway: {}\nkubernetes: {namespaces: [default]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &harness.SyncBuffer{}
	cp, err := local.StartEnvoyGateway(context.Background(), path, slog.New(slog.NewTextHandler(logs, nil)), &local.Kubernetes{Rest: cluster.Config})
	if err != nil {
		t.Fatal(err)
	}
	st.cp = cp
	t.Cleanup(func() {
		_ = cp.Close()
		if t.Failed() {
			t.Logf("control plane log:\n%s", logs)
		}
	})
	poll.Eventually(t, "the controller to write the AIGatewayRoute's HTTPRoute", func() bool {
		st.httpRoute, err = dyn.Resource(aigatewayroute.HTTPRoutes).Namespace("default").Get(context.Background(), "llm-models", metav1.GetOptions{})
		return err == nil
	})
	// plain text only: the proxy is the host (no downstream TLS)
	gateway := onlyKinds(withoutTLSListener(string(repoFile(t, "e2e/testdata/envoygateway/resources.yaml"))), "GatewayClass", "Gateway")
	st.eg = startEnvoyGateway(t, bin, egrun.Docs(gateway, pool, fileProviderObject(t, st.httpRoute)), cp.ExtensionAddr)
	return st
}

// TestEnvoyGatewayAIGatewayRoute: an AIGatewayRoute on a real API server
// becomes the HTTPRoute that the real Envoy Gateway translates; the route
// it makes is bound to the InferencePool's pool, the model is in the filter
// config with the pool's Ready pods as members, all through the same
// hooks as a hand-written HTTPRoute.
func TestEnvoyGatewayAIGatewayRoute(t *testing.T) {
	st := startEGKubeStack(t)
	served := fetchServed(t, st.eg, func(s *egrun.Served) bool { return hasInflowFilter(s.Listeners[egHTTPListener]) })
	var bound int
	for _, vh := range served.Routes[egHTTPListener].GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if strings.HasPrefix(r.GetName(), "httproute/default/llm-models/") {
				checkBoundRoute(t, r, "default.llama", 2)
				bound++
				if hs := r.GetMatch().GetHeaders(); len(hs) != 2 {
					t.Errorf("route %s matches %d headers, want x-ai-eg-model and x-tenant", r.GetName(), len(hs))
				}
			}
		}
	}
	if bound != 1 {
		t.Fatalf("%d routes from the AIGatewayRoute, want 1", bound)
	}
	checkPoolCluster(t, served.Clusters["httproute/default/llm-models/rule/0"], "default.llama", config.DestinationOverrideHost)

	poll.Eventually(t, "the filter config to serve the AIGatewayRoute's model from the pool's pods", func() bool {
		fc := servedFilterConfig(t, st.cp.Addr, served.Listeners[egHTTPListener])
		if fc == nil {
			return false
		}
		m := slices.IndexFunc(fc.Models, func(m config.Model) bool { return m.Name == egModel && m.Pool == "default.llama" })
		p := slices.IndexFunc(fc.Pools, func(p config.Pool) bool { return p.Name == "default.llama" })
		return m >= 0 && p >= 0 && slices.Equal(fc.Pools[p].Endpoints, st.endpoints)
	})

	t.Run("through the host", func(t *testing.T) {
		// the AIGatewayRoute's model and header reach a pool pod through
		// Inflow's pick; another tenant matches no route
		h := startEGProxyOf(t, st.eg, st.cp.Addr)
		client := openai.NewClient(option.WithBaseURL("http://"+h.Addr+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
		params := openai.ChatCompletionNewParams{Model: egModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}}
		var last error
		if err := poll.Until(testContext(t), 20*time.Second, "a completion through the AIGatewayRoute", func() bool {
			var resp *openai.ChatCompletion
			resp, last = client.Chat.Completions.New(testContext(t), params, option.WithHeader("x-tenant", "gold"))
			return last == nil && resp.Model == egModel && resp.Usage.TotalTokens > 0
		}); err != nil {
			t.Fatalf("%v: %v", err, last)
		}
		_, err := client.Chat.Completions.New(testContext(t), params, option.WithHeader("x-tenant", "silver"))
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Type != "invalid_request_error" {
			t.Errorf("another tenant: %v, want the OpenAI-shaped 404 of no route", err)
		}
	})
}

// createObject creates a YAML object through the dynamic client.
func createObject(t *testing.T, dyn dynamic.Interface, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	gv, err := schema.ParseGroupVersion(u.GetAPIVersion())
	if err != nil {
		t.Fatal(err)
	}
	gvr := gv.WithResource(strings.ToLower(u.GetKind()) + "s")
	out, err := dyn.Resource(gvr).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

// kubePod creates a Ready pod with ip, as a kubelet would report it.
func kubePod(t *testing.T, kc kubernetes.Interface, name, ip string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	p, err := kc.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "vllm", Image: "vllm/vllm-openai"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(time.Now())}}}
	if _, err := kc.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// fileProviderObject is u as a manifest for Envoy Gateway's File provider:
// what the API server added (status, managed fields, versions) removed.
func fileProviderObject(t *testing.T, u *unstructured.Unstructured) string {
	t.Helper()
	c := u.DeepCopy()
	delete(c.Object, "status")
	for _, f := range []string{"managedFields", "resourceVersion", "uid", "creationTimestamp", "generation"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	b, err := yaml.Marshal(c.Object)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// onlyKinds keeps the YAML documents of kinds.
func onlyKinds(docs string, kinds ...string) string {
	var keep []string
	for _, d := range yamlDocs(docs) {
		if slices.ContainsFunc(kinds, func(k string) bool { return docKind(d) == k }) {
			keep = append(keep, d)
		}
	}
	return egrun.Docs(keep...)
}

// yamlDocs splits a YAML stream into its documents, dropping empty ones.
func yamlDocs(s string) []string {
	var out []string
	for _, d := range strings.Split("\n"+s+"\n", "\n---\n") {
		if docKind(d) != "" {
			out = append(out, strings.TrimSpace(d))
		}
	}
	return out
}

func docKind(d string) string {
	var m struct {
		Kind string `json:"kind"`
	}
	_ = yaml.Unmarshal([]byte(d), &m)
	return m.Kind
}

// servedFilterConfig is the filter config Envoy Gateway's listener l runs:
// the ECDS resource it names, as Inflow serves it to the proxies (delta,
// as they subscribe), or nil before there is one.
func servedFilterConfig(t *testing.T, addr string, l *listenerv3.Listener) *config.Config {
	t.Helper()
	got, err := xdstest.DeltaFetch(t.Context(), addr, &corev3.Node{Id: "proxy", Cluster: egGateway}, resource.ExtensionConfigType, translator.FilterExtensionName)
	if err != nil || got[translator.FilterExtensionName] == nil {
		return nil
	}
	ext := &corev3.TypedExtensionConfig{}
	if err := got[translator.FilterExtensionName].GetResource().UnmarshalTo(ext); err != nil {
		t.Fatal(err)
	}
	g, err := translator.GolangFilter(l, translator.ExtensionsByName([]*corev3.TypedExtensionConfig{ext}))
	if err != nil {
		t.Fatal(err)
	}
	fc, err := config.FromAny(g.GetPluginConfig())
	if err != nil {
		t.Fatalf("the filter would refuse its config: %v", err)
	}
	return fc
}
