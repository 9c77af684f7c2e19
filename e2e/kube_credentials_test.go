package e2e

import (
	"context"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/inflow-gateway/inflow/controlplane/kube"
	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// testKubeAPIKey: an AIServiceBackend with an APIKey BackendSecurityPolicy
// gets the key of its Secret on every request, in place of the client's,
// as the Envoy pod runs it: the credential sidecar writes the Secret into
// the folder the host mounts where the cluster's SDS config points, and
// the host's credential injector sends it. A Secret update reaches the
// backend without a restart, and no xDS resource carries a key.
func testKubeAPIKey(t *testing.T, ns *kubetest.Namespace) {
	const key, rotated = "sk-e2e-never-in-xds-1", "sk-e2e-never-in-xds-2"
	dir := t.TempDir()
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	sync := &kube.CredentialSync{Rest: ns.Rest, Namespaces: []string{ns.Name}, Dir: dir, Log: slog.New(slog.DiscardHandler)}
	go func() { done <- sync.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "openai-key", Namespace: ns.Name}, Data: map[string][]byte{"apiKey": []byte(key)}}
	if _, err := ns.Kube.CoreV1().Secrets(ns.Name).Create(ns.Ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	port := freeLoopbackPort(t)
	s := startKubeStackWith(t, ns, nil, false, harness.XDSHostOptions{Mounts: map[string]string{spec.DefaultCredentialsDir: dir}})
	backend := s.podServer("gpt", "127.0.6.1", port)
	serviceBackend(ns, "openai", "127.0.6.1", port)
	ns.Create(kubetest.PoliciesGVR, "BackendSecurityPolicy", "openai-key", map[string]any{
		"type":       "APIKey",
		"targetRefs": []any{map[string]any{"group": "aigateway.envoyproxy.io", "kind": "AIServiceBackend", "name": "openai"}},
		"apiKey":     map[string]any{"secretRef": map[string]any{"name": "openai-key"}},
	})
	ns.Route(kubetest.RoutesGVR, "keyed", kubetest.ModelRule("gpt", serviceRef("openai", 1, 0, "")))
	s.applied("the keyed backend", hasModel("gpt"))
	// The backend's cluster names an SDS file the sidecar may not have
	// written yet: the host refuses that cluster as Envoy does
	// (NACK) and takes it when the control plane sends it again. Until
	// then its requests are 503s, so wait for the clusters.
	s.clustersAccepted("the keyed backend's cluster")

	s.chatUntil("the key reaching the backend", "gpt", func() bool { return backend.lastAuth() != "" })
	if got := backend.lastAuth(); got != "Bearer "+key {
		t.Fatalf("the backend got Authorization %q, want the Secret's key (the client's must not pass)", got)
	}
	secret.Data["apiKey"] = []byte(rotated)
	if _, err := ns.Kube.CoreV1().Secrets(ns.Name).Update(ns.Ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := poll.Until(t.Context(), kubeAwait, "the rotated key reaching the backend", func() bool {
		s.chatOK("gpt", 1)
		return backend.lastAuth() == "Bearer "+rotated
	}); err != nil {
		t.Fatalf("%v: the backend still gets %q", err, backend.lastAuth())
	}
	noKeyServed(t, s.cp.Addr, kube.BackendName(types.NamespacedName{Namespace: ns.Name, Name: "openai"}), key, rotated)
}

// noKeyServed follows the control plane as an Envoy does until it holds
// backend's cluster, and fails if any resource it served carries a key.
func noKeyServed(t *testing.T, addr, backend string, keys ...string) {
	t.Helper()
	e, err := xdstest.Connect(addr, "key-check")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Await(kubeAwait, func(st *xdstest.State) bool {
		return st.Clusters[translator.BackendClusterName(backend)] != nil && len(st.Extensions) > 0
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if m := e.State.Carrying(k); m != nil {
			t.Fatalf("an xDS resource carries an API key: %v", m)
		}
	}
}
