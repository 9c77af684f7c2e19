package kube_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	credinjv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/credential_injector/v3"
	genericv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/injected_credentials/generic/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/inflow-gateway/inflow/controlplane/kube"
	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/filter/config"
)

// testBackends: an AIServiceBackend with an APIKey BackendSecurityPolicy
// becomes an external backend whose cluster injects the key from an SDS
// file; the sidecar writes that file from the Secret (and rewrites it on
// rotation), and no xDS resource ever carries the key.
func testBackends(t *testing.T, f *fixture) {
	const key, rotated = "sk-test-never-in-xds-0001", "sk-test-never-in-xds-0002"
	dir := t.TempDir()
	f.Create(kubetest.EGBackendsGVR, "Backend", "openai", map[string]any{
		"endpoints": []any{map[string]any{"fqdn": map[string]any{"hostname": "api.openai.com", "port": int64(443)}}},
	})
	f.Create(kubetest.ServicesGVR, "AIServiceBackend", "openai", map[string]any{
		"schema":     map[string]any{"name": "OpenAI"},
		"backendRef": map[string]any{"name": "openai", "kind": "Backend", "group": "gateway.envoyproxy.io"},
	})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "openai-key", Namespace: f.Name}, Data: map[string][]byte{"apiKey": []byte(key)}}
	if _, err := f.Kube.CoreV1().Secrets(f.Name).Create(f.Ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.Create(kubetest.PoliciesGVR, "BackendSecurityPolicy", "openai-key", map[string]any{
		"type":       "APIKey",
		"targetRefs": []any{map[string]any{"group": "aigateway.envoyproxy.io", "kind": "AIServiceBackend", "name": "openai"}},
		"apiKey":     map[string]any{"secretRef": map[string]any{"name": "openai-key"}},
	})
	mini, mini2 := map[string]any{"name": "openai", "modelNameOverride": "gpt-4o-mini-2024-07-18", "weight": int64(3)},
		map[string]any{"name": "openai", "weight": int64(1)}
	f.Route(kubetest.RoutesGVR, "openai", kubetest.ModelRule("gpt-4o-mini", mini, mini2))

	cp := f.controlPlane("  credentials_dir: "+dir+"\n", nil)
	backend := kube.BackendName(nsName(f.Name, "openai"))
	got := cp.await("the external backend", func(c *config.Config) bool { return modelOf(c, "gpt-4o-mini") != nil })
	m := modelOf(got, "gpt-4o-mini")
	if m.Backend != backend || len(m.Rewrite) != 2 || m.Rewrite[0].Model != "gpt-4o-mini-2024-07-18" ||
		*m.Rewrite[0].Weight != 3 || m.Rewrite[1].Model != "gpt-4o-mini" || *m.Rewrite[1].Weight != 1 {
		t.Fatalf("weighted modelNameOverrides: %+v", m)
	}
	file := kube.CredentialFile(dir, nsName(f.Name, "openai-key"))
	checkInjector(t, cp.envoy.State.Clusters[translator.BackendClusterName(backend)], file)
	noKeyIn(t, &cp.envoy.State, key)

	// The sidecar, as the Envoy pod runs it.
	ctx, stop := context.WithCancel(f.Ctx)
	done := make(chan error, 1)
	sync := &kube.CredentialSync{Rest: f.Rest, Namespaces: []string{f.Name}, Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go func() { done <- sync.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "the key file", func() bool { return sdsKey(file) == key })
	secret.Data["apiKey"] = []byte(rotated + "\n")
	if _, err := f.Kube.CoreV1().Secrets(f.Name).Update(f.Ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rotated key file", func() bool { return sdsKey(file) == rotated })
	noKeyIn(t, &cp.envoy.State, rotated)
}

// checkInjector: the cluster's upstream filters inject the key from file.
func checkInjector(t *testing.T, c *clusterv3.Cluster, file string) {
	t.Helper()
	if c == nil {
		t.Fatal("no backend cluster")
	}
	var opts upstreamhttpv3.HttpProtocolOptions
	if err := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(&opts); err != nil {
		t.Fatalf("protocol options: %v", err)
	}
	fs := opts.GetHttpFilters()
	if len(fs) != 2 || fs[0].GetName() != "envoy.filters.http.credential_injector" || fs[1].GetName() != "envoy.filters.http.upstream_codec" {
		t.Fatalf("upstream filters: %v", fs)
	}
	var inj credinjv3.CredentialInjector
	var gen genericv3.Generic
	if err := fs[0].GetTypedConfig().UnmarshalTo(&inj); err != nil {
		t.Fatal(err)
	}
	if err := inj.GetCredential().GetTypedConfig().UnmarshalTo(&gen); err != nil {
		t.Fatal(err)
	}
	if !inj.GetOverwrite() || gen.GetHeader() != "authorization" || gen.GetHeaderValuePrefix() != "Bearer " ||
		gen.GetCredential().GetSdsConfig().GetPathConfigSource().GetPath() != file {
		t.Fatalf("credential injector: %v / %v", &inj, &gen)
	}
}

// noKeyIn fails if any resource the control plane served holds key.
func noKeyIn(t *testing.T, s *xdstest.State, key string) {
	t.Helper()
	if m := s.Carrying(key); m != nil {
		t.Fatalf("an xDS resource carries the API key: %v", m)
	}
}

// sdsKey reads the key back from an SDS file as Envoy would, or "".
func sdsKey(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var resp discoveryv3.DiscoveryResponse
	if protojson.Unmarshal(data, &resp) != nil || len(resp.GetResources()) != 1 {
		return ""
	}
	var s tlsv3.Secret
	if resp.GetResources()[0].UnmarshalTo(&s) != nil {
		return ""
	}
	key, err := os.ReadFile(s.GetGenericSecret().GetSecret().GetFilename())
	if err != nil {
		return ""
	}
	return string(key)
}
