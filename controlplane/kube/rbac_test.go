package kube_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/inflow-gateway/inflow/controlplane/kube"
	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/filter/config"
)

// testShippedRBAC: the control plane and the credential sidecar do their
// whole job under exactly the Roles build/k8s ships (RBAC is enforced by
// the API server), and the sidecar cannot read a Secret its Role does not
// name.
func testShippedRBAC(t *testing.T, c *kubetest.Cluster, f *fixture) {
	root := kubetest.Root(t)
	cpUser, sidecarUser := c.BindShipped(t, f.Name, filepath.Join(root, "build/k8s/controlplane/rbac.yaml"), "cp"),
		c.BindShipped(t, f.Name, filepath.Join(root, "build/k8s/envoy/rbac.yaml"), "sidecar")

	app := map[string]string{"app": "gemma2"}
	f.Pod("a", "127.0.0.51", app, true, nil)
	f.Pool("gemma2", app, 8000)
	f.Route(kubetest.RoutesGVR, "broken", kubetest.ModelRule("missing", kubetest.PoolRef("nope")))
	f.Route(kubetest.RoutesGVR, "good", kubetest.ModelRule("gemma-2-9b", kubetest.PoolRef("gemma2")))
	const key = "sk-rbac-test-key"
	for _, name := range []string{"openai-api-key", "unrelated"} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.Name}, Data: map[string][]byte{"apiKey": []byte(key)}}
		if _, err := f.Kube.CoreV1().Secrets(f.Name).Create(f.Ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f.Create(kubetest.PoliciesGVR, "BackendSecurityPolicy", "openai", map[string]any{
		"type": "APIKey", "apiKey": map[string]any{"secretRef": map[string]any{"name": "openai-api-key"}},
	})

	// The control plane as the shipped Role allows, electing a leader.
	admin := f.Rest
	f.Rest = cpUser
	election := &kube.Election{Namespace: f.Name, Name: "inflow-controlplane-leader", Identity: "cp-0"}
	cp := f.controlPlane("", election)
	f.Rest = admin
	cp.await("served under the shipped Role", func(cfg *config.Config) bool { return modelOf(cfg, "gemma-2-9b") != nil })
	waitFor(t, "the lease", election.Leading)
	waitStatus(t, f, "broken", func(conds []metav1.Condition) bool { return kubetest.FindCondition(conds, "ResolvedRefs") != nil })
	waitFor(t, "a Warning Event", func() bool {
		evs, err := f.Kube.CoreV1().Events(f.Name).List(f.Ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=broken"})
		return err == nil && len(evs.Items) > 0
	})

	// The sidecar as the shipped Role allows.
	dir := t.TempDir()
	ctx, stop := context.WithCancel(f.Ctx)
	done := make(chan error, 1)
	sync := &kube.CredentialSync{Rest: sidecarUser, Namespaces: []string{f.Name}, Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go func() { done <- sync.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	file := kube.CredentialFile(dir, nsName(f.Name, "openai-api-key"))
	waitFor(t, "the key file under the shipped Role", func() bool { return sdsKey(file) == key })
	kc := kubernetes.NewForConfigOrDie(sidecarUser)
	if _, err := kc.CoreV1().Secrets(f.Name).Get(f.Ctx, "unrelated", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the sidecar read a Secret its Role does not name: %v", err)
	}
	if _, err := kubernetes.NewForConfigOrDie(cpUser).CoreV1().Secrets(f.Name).Get(f.Ctx, "openai-api-key", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the control plane read a Secret: %v", err)
	}
}
