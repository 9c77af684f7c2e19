package check

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"golang.org/x/mod/modfile"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/inflow-gateway/inflow/controlplane/envoygateway"
)

const egDir = "build/k8s/envoy-gateway"

// TestKustomizeEnvoyGateway: the EnvoyProxy runs the custom image with a
// non-root context and adds the inflow-xds cluster to Envoy Gateway's
// bootstrap, reaching the control plane's xDS port over mutual TLS with
// the client Secret it mounts; the control plane serves the extension on
// the port its Service exposes and a config in Envoy Gateway mode naming
// that cluster. No EnvoyPatchPolicy is left.
func TestKustomizeEnvoyGateway(t *testing.T) {
	v := versions(t)
	objs := build(t, egDir)
	if n := len(of[*egv1a1.EnvoyPatchPolicy](objs)); n != 0 {
		t.Errorf("%d EnvoyPatchPolicy: the extension server replaces them", n)
	}
	eps := of[*egv1a1.EnvoyProxy](objs)
	if len(eps) != 1 {
		t.Fatalf("%d EnvoyProxy, want 1", len(eps))
	}
	ep := eps[0]
	dep := ep.Spec.Provider.Kubernetes.EnvoyDeployment
	if dep.Container.Image == nil || *dep.Container.Image != v.InflowEnvoyImage() {
		t.Errorf("EnvoyProxy image %v, want %s", dep.Container.Image, v.InflowEnvoyImage())
	}
	sc := dep.Container.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("EnvoyProxy container: want runAsNonRoot and no privilege escalation")
	}
	if dep.Container.Resources == nil || dep.Container.Resources.Requests.Memory().IsZero() {
		t.Error("EnvoyProxy container: want resource requests")
	}
	for _, gw := range of[*gwapiv1.Gateway](objs) {
		if ref := gw.Spec.Infrastructure.ParametersRef; ref == nil || ref.Kind != "EnvoyProxy" || ref.Name != ep.Name {
			t.Errorf("Gateway %s does not use the EnvoyProxy %s", gw.Name, ep.Name)
		}
	}

	cfg := kubeControlPlaneConfig(t, objs)
	if cfg.EnvoyGateway == nil {
		t.Fatal("the control plane's config has no envoy_gateway section")
	}
	c := bootstrapCluster(t, ep, cfg.EnvoyGateway.EffectiveXDSCluster())
	svc := serviceNamed(t, objs, "controlplane")
	a := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	cp := deployment(t, objs, "inflow-controlplane")
	args := cp.Spec.Template.Spec.Containers[0].Args
	xds, _ := FlagValue(args, "xds-address")
	if p, _ := Port(xds); a.GetAddress() != svc.Name || a.GetPortValue() != p || !servicePort(svc, p) {
		t.Errorf("inflow-xds dials %s:%d; the control plane serves xDS on %q behind Service %s", a.GetAddress(), a.GetPortValue(), xds, svc.Name)
	}
	checkProxyTLS(t, ep, c, svc.Name)
	if cfg.Kubernetes == nil {
		t.Error("the control plane's config has no kubernetes section: nothing would read the InferencePools")
	}
	checkRouteWriter(t, objs)
	ext, ok := FlagValue(args, "envoy-gateway-address")
	if p, err := Port(ext); !ok || err != nil || p != envoygateway.DefaultPort || !servicePort(svc, p) {
		t.Errorf("--envoy-gateway-address %q: want port %d, exposed by Service %s", ext, envoygateway.DefaultPort, svc.Name)
	}
}

// checkRouteWriter: beyond build/k8s's read-only Role, the control plane
// may write HTTPRoutes (the AIGatewayRoutes' it generates), and nothing
// else, in its namespace.
func checkRouteWriter(t *testing.T, objs []runtime.Object) {
	t.Helper()
	var extra *rbacv1.Role
	for _, r := range of[*rbacv1.Role](objs) {
		if r.Name == "inflow-httproutes" {
			extra = r
		}
	}
	if extra == nil || len(extra.Rules) != 1 {
		t.Fatal("no Role inflow-httproutes with one rule")
	}
	r := extra.Rules[0]
	if !slices.Equal(r.APIGroups, []string{"gateway.networking.k8s.io"}) || !slices.Equal(r.Resources, []string{"httproutes"}) ||
		!slices.Equal(r.Verbs, []string{"get", "list", "watch", "create", "patch", "delete"}) {
		t.Errorf("inflow-httproutes grants %v", r)
	}
	bound := false
	for _, b := range of[*rbacv1.RoleBinding](objs) {
		if b.RoleRef.Name == extra.Name {
			bound = len(b.Subjects) == 1 && b.Subjects[0].Kind == "ServiceAccount" && b.Subjects[0].Name == "inflow-controlplane"
		}
	}
	if !bound || len(of[*rbacv1.ClusterRole](objs)) != 0 {
		t.Error("inflow-httproutes must be bound to the control plane's ServiceAccount alone, and no ClusterRole")
	}
}

// bootstrapCluster is the named cluster of the EnvoyProxy's bootstrap
// (a Merge fragment), which must validate as an Envoy bootstrap.
func bootstrapCluster(t *testing.T, ep *egv1a1.EnvoyProxy, name string) *clusterv3.Cluster {
	t.Helper()
	bs := ep.Spec.Bootstrap
	if bs == nil || bs.Type == nil || *bs.Type != egv1a1.BootstrapTypeMerge || bs.Value == nil {
		t.Fatal("the EnvoyProxy must merge a cluster into Envoy Gateway's bootstrap")
	}
	b, err := ParseBootstrap([]byte(*bs.Value))
	if err != nil {
		t.Fatalf("EnvoyProxy bootstrap: %v", err)
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("the EnvoyProxy's bootstrap has no cluster %q, which the control plane's config names", name)
	return nil
}

// checkProxyTLS: the proxies present the client certificate of a mounted
// Secret, check the control plane's name, and watch the directory.
func checkProxyTLS(t *testing.T, ep *egv1a1.EnvoyProxy, c *clusterv3.Cluster, host string) {
	t.Helper()
	var up tlsv3.UpstreamTlsContext
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&up); err != nil {
		t.Fatalf("inflow-xds is not TLS: %v", err)
	}
	cc := up.GetCommonTlsContext()
	val := cc.GetValidationContext()
	if up.GetSni() != host || len(val.GetMatchTypedSubjectAltNames()) != 1 || val.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact() != host {
		t.Errorf("sni %q, SANs %v: want exactly %q", up.GetSni(), val.GetMatchTypedSubjectAltNames(), host)
	}
	if len(cc.GetTlsCertificates()) != 1 {
		t.Fatal("the proxies present no client certificate")
	}
	cert := cc.GetTlsCertificates()[0]
	files := map[string]string{
		cert.GetCertificateChain().GetFilename(): "tls.crt",
		cert.GetPrivateKey().GetFilename():       "tls.key",
		val.GetTrustedCa().GetFilename():         "ca.crt",
	}
	dep := ep.Spec.Provider.Kubernetes.EnvoyDeployment
	for file, key := range files {
		dir := path.Dir(file)
		mount := slices.IndexFunc(dep.Container.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir })
		if mount < 0 || path.Base(file) != key {
			t.Errorf("%s is not key %s of a mounted volume", file, key)
			continue
		}
		name := dep.Container.VolumeMounts[mount].Name
		vol := slices.IndexFunc(dep.Pod.Volumes, func(v corev1.Volume) bool { return v.Name == name })
		if vol < 0 || dep.Pod.Volumes[vol].Secret == nil || dep.Pod.Volumes[vol].Secret.SecretName != "inflow-xds-client" {
			t.Errorf("%s: volume %q is not the Secret inflow-xds-client (build/k8s/xds-certs.sh)", file, name)
		}
		for _, w := range []string{cert.GetWatchedDirectory().GetPath(), val.GetWatchedDirectory().GetPath()} {
			if w != dir {
				t.Errorf("watched_directory %q, the files are in %s: renewals would not be seen", w, dir)
			}
		}
	}
}

func serviceNamed(t *testing.T, objs []runtime.Object, name string) *corev1.Service {
	t.Helper()
	for _, s := range of[*corev1.Service](objs) {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s", name)
	return nil
}

func servicePort(s *corev1.Service, p uint32) bool {
	return slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return uint32(sp.Port) == p })
}

// TestEnvoyGatewayValues: the Helm values give Envoy Gateway a config it
// accepts (strictly decoded) that calls exactly the hooks the extension
// server implements, on the control plane's Service and port, with
// InferencePool as a backend resource, and runs proxies in their
// Gateway's namespace (where they find the client Secret).
func TestEnvoyGatewayValues(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root(t), egDir, "envoy-gateway-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Config struct {
			EnvoyGateway map[string]any `json:"envoyGateway"`
		} `json:"config"`
	}
	if err := yaml.UnmarshalStrict(data, &values); err != nil {
		t.Fatal(err)
	}
	eg := values.Config.EnvoyGateway
	eg["apiVersion"], eg["kind"] = egv1a1.GroupVersion.String(), egv1a1.KindEnvoyGateway
	doc, err := yaml.Marshal(eg)
	if err != nil {
		t.Fatal(err)
	}
	// A config type, not an API object: decoded as Envoy Gateway's loader
	// does, into the type itself, refusing unknown fields.
	cfg := &egv1a1.EnvoyGateway{}
	if err := yaml.UnmarshalStrict(doc, cfg); err != nil {
		t.Fatalf("Envoy Gateway would refuse its config: %v", err)
	}
	em := cfg.ExtensionManager
	if em == nil || em.Hooks == nil || em.Hooks.XDSTranslator == nil {
		t.Fatal("no extensionManager.hooks.xdsTranslator")
	}
	var hooks []string
	for _, h := range em.Hooks.XDSTranslator.Post {
		hooks = append(hooks, string(h))
	}
	if !slices.Equal(hooks, envoygateway.Hooks) || len(em.Hooks.XDSTranslator.Pre) != 0 {
		t.Errorf("post hooks %v, pre %v: the extension server implements exactly %v", hooks, em.Hooks.XDSTranslator.Pre, envoygateway.Hooks)
	}
	// PostTranslateModify adds clusters: it needs them, and must never be
	// sent the Gateways' TLS keys
	if tc := em.Hooks.XDSTranslator.Translation; !tc.ShouldIncludeClusters() || tc.ShouldIncludeSecrets() {
		t.Error("translation hook: include the clusters and no secrets")
	}
	objs := build(t, egDir)
	svc := serviceNamed(t, objs, "controlplane")
	want := svc.Name + "." + svc.Namespace + ".svc.cluster.local"
	if f := em.Service.FQDN; f == nil || f.Hostname != want || f.Port != envoygateway.DefaultPort {
		t.Errorf("extension service %+v, want %s:%d", f, want, envoygateway.DefaultPort)
	}
	if len(em.BackendResources) != 1 || em.BackendResources[0] != (egv1a1.GroupVersionKind{Group: "inference.networking.k8s.io", Version: "v1", Kind: "InferencePool"}) {
		t.Errorf("backendResources %v, want InferencePool v1 only", em.BackendResources)
	}
	if em.FailOpen {
		t.Error("failOpen: a failing extension server would give proxies a config without the filter")
	}
	if !cfg.GatewayNamespaceMode() {
		t.Error("proxies must run in their Gateway's namespace, where the client Secret is")
	}
}

// TestEnvoyGatewayModules: the Envoy Gateway built for the tests, the one
// whose extension API the product imports and whose types check the
// manifests here are all ENVOY_GATEWAY_VERSION.
func TestEnvoyGatewayModules(t *testing.T) {
	v := versions(t)
	for _, mod := range []string{"go.mod", "build/envoygateway/go.mod", "build/check/go.mod"} {
		p := filepath.Join(root(t), mod)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := modfile.Parse(p, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(f.Require, func(r *modfile.Require) bool { return r.Mod.Path == "github.com/envoyproxy/gateway" })
		if i < 0 || f.Require[i].Mod.Version != v.EnvoyGateway {
			t.Errorf("%s does not require github.com/envoyproxy/gateway %s", mod, v.EnvoyGateway)
		}
	}
	mk, err := os.ReadFile(filepath.Join(root(t), "mk", "envoygateway.mk"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mk), v.EnvoyGateway) {
		t.Errorf("mk/envoygateway.mk hard-codes %s", v.EnvoyGateway)
	}
}
