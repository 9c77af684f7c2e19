package check

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// build kustomizes dir (relative to the repository root) and decodes every
// resource into its typed object.
func build(t *testing.T, dir string) []runtime.Object {
	t.Helper()
	docs, err := Kustomize(filepath.Join(root(t), dir))
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	s, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	dec := Decoder(s)
	var objs []runtime.Object
	for _, d := range docs {
		obj, gvk, err := dec.Decode(d, nil, nil)
		if err != nil {
			t.Errorf("%s: %v\n%s", dir, err, d)
			continue
		}
		if _, unstructured := obj.(runtime.Unstructured); unstructured {
			t.Errorf("%s: %v decoded untyped", dir, gvk)
		}
		objs = append(objs, obj)
	}
	return objs
}

func of[T runtime.Object](objs []runtime.Object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestStrictDecodingCatchesTypos: the decoder is not lenient, so the typed
// decoding below proves something.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	s, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	for _, y := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicaz: 1}\n",
		"apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyProxy\nmetadata: {name: x}\nspec: {provider: {type: Kubernetes, kubernetes: {envoyDeployment: {container: {imag: x}}}}}\n",
	} {
		if _, _, err := Decoder(s).Decode([]byte(y), nil, nil); err == nil {
			t.Errorf("accepted a misspelt field:\n%s", y)
		}
	}
}

func TestKustomizeBase(t *testing.T) {
	v := versions(t)
	objs := build(t, "build/k8s")
	deps := of[*appsv1.Deployment](objs)
	images := map[string]string{"inflow-controlplane": v.ControlPlaneImage(), "inflow-envoy": v.InflowEnvoyImage()}
	if len(deps) != len(images) {
		t.Fatalf("%d Deployments, want %d", len(deps), len(images))
	}
	for _, d := range deps {
		if d.Namespace != "inflow" {
			t.Errorf("%s in namespace %q", d.Name, d.Namespace)
		}
		checkPod(t, d.Name, d.Spec.Template.Spec)
		if got := d.Spec.Template.Spec.Containers[0].Image; got != images[d.Name] {
			t.Errorf("%s: image %q, want %q", d.Name, got, images[d.Name])
		}
	}
	checkControlPlaneWiring(t, objs)
	checkRBAC(t, objs)
}

// checkPod: probes, resources and a non-root, unprivileged security context
// for every container.
func checkPod(t *testing.T, name string, p corev1.PodSpec) {
	t.Helper()
	if p.SecurityContext == nil || p.SecurityContext.RunAsNonRoot == nil || !*p.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pod without runAsNonRoot", name)
	}
	if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it does not use", name)
	}
	for _, c := range p.Containers {
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("%s/%s: needs readiness and liveness probes", name, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: needs cpu and memory requests and a memory limit", name, c.Name)
		}
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s/%s: want no privilege escalation, a read-only root and all capabilities dropped", name, c.Name)
		}
		for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			if probe == nil {
				continue
			}
			port := probe.TCPSocket
			var named string
			if port != nil {
				named = port.Port.String()
			} else if probe.HTTPGet != nil {
				named = probe.HTTPGet.Port.String()
			}
			if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == named }) {
				t.Errorf("%s/%s: probe on port %q, which the container does not declare", name, c.Name, named)
			}
		}
	}
}

// checkControlPlaneWiring: Envoy's bootstrap (its -c file, from a
// ConfigMap) dials the Service that fronts the control plane's xDS port,
// and the control plane's --config is the mounted ConfigMap's file, which
// it accepts.
func checkControlPlaneWiring(t *testing.T, objs []runtime.Object) {
	b := kubeBootstrap(t, objs)
	host, port, err := ControlPlaneAddress(b)
	if err != nil {
		t.Fatal(err)
	}
	var svc *corev1.Service
	for _, s := range of[*corev1.Service](objs) {
		if s.Name == host {
			svc = s
		}
	}
	if svc == nil || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return uint32(p.Port) == port }) {
		t.Fatalf("envoy.yaml dials %s:%d, no such Service port", host, port)
	}
	var cp *appsv1.Deployment
	for _, d := range of[*appsv1.Deployment](objs) {
		if d.Name == "inflow-controlplane" {
			cp = d
		}
	}
	if cp == nil {
		t.Fatal("no inflow-controlplane Deployment")
	}
	if !labelsMatch(svc.Spec.Selector, cp.Spec.Template.Labels) {
		t.Errorf("Service %s selects %v, the control plane's pods are %v", svc.Name, svc.Spec.Selector, cp.Spec.Template.Labels)
	}
	c := cp.Spec.Template.Spec.Containers[0]
	xds, _ := FlagValue(c.Args, "xds-address")
	if p, err := Port(xds); err != nil || p != port {
		t.Errorf("control plane serves xDS on %q, envoy.yaml dials port %d", xds, port)
	}
	cfgPath, _ := FlagValue(c.Args, "config")
	var cmName string
	for _, m := range c.VolumeMounts {
		if filepath.Dir(cfgPath) == m.MountPath {
			for _, v := range cp.Spec.Template.Spec.Volumes {
				if v.Name == m.Name && v.ConfigMap != nil {
					cmName = v.ConfigMap.Name
				}
			}
		}
	}
	for _, cm := range of[*corev1.ConfigMap](objs) {
		if cm.Name != cmName {
			continue
		}
		data, ok := cm.Data[filepath.Base(cfgPath)]
		if !ok {
			t.Fatalf("ConfigMap %s has no %s", cm.Name, filepath.Base(cfgPath))
		}
		if _, err := spec.Parse([]byte(data)); err != nil {
			t.Errorf("the control plane would refuse its config: %v", err)
		}
		return
	}
	t.Errorf("--config %s is not a file of a mounted ConfigMap (mount's ConfigMap %q)", cfgPath, cmName)
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// checkRBAC: read-only verbs on named resources, no secrets, no wildcards,
// bound to the control plane's ServiceAccount only.
func checkRBAC(t *testing.T, objs []runtime.Object) {
	roles := of[*rbacv1.Role](objs)
	if len(roles) != 1 || len(of[*rbacv1.ClusterRole](objs)) != 0 {
		t.Fatalf("want one namespaced Role and no ClusterRole")
	}
	for _, r := range roles[0].Rules {
		for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames} {
			if slices.Contains(list, "*") {
				t.Errorf("rule %v has a wildcard", r)
			}
		}
		if len(r.ResourceNames) == 0 || slices.Contains(r.Resources, "secrets") {
			t.Errorf("rule %v: want named resources, no secrets", r)
		}
		for _, v := range r.Verbs {
			if !slices.Contains([]string{"get", "list", "watch"}, v) {
				t.Errorf("rule %v: verb %q is more than reading", r, v)
			}
		}
	}
	for _, b := range of[*rbacv1.RoleBinding](objs) {
		if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != "inflow-controlplane" {
			t.Errorf("RoleBinding %s subjects %v", b.Name, b.Subjects)
		}
	}
}

// TestKustomizeEnvoyGateway: the EnvoyProxy selects the custom image with a
// non-root context, the Gateway uses it, and the EnvoyPatchPolicy's values
// are what Envoy and the filter accept: an HTTP filter whose plugin_config
// the filter's own parser takes, and a valid ORIGINAL_DST cluster.
func TestKustomizeEnvoyGateway(t *testing.T) {
	v := versions(t)
	objs := build(t, "build/k8s/envoy-gateway")
	eps := of[*egv1a1.EnvoyProxy](objs)
	if len(eps) != 1 {
		t.Fatalf("%d EnvoyProxy, want 1", len(eps))
	}
	dep := eps[0].Spec.Provider.Kubernetes.EnvoyDeployment
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
	pols := of[*egv1a1.EnvoyPatchPolicy](objs)
	if len(pols) != 1 {
		t.Fatalf("%d EnvoyPatchPolicy, want 1", len(pols))
	}
	var filters, clusters int
	for _, p := range pols[0].Spec.JSONPatches {
		val := p.Operation.Value
		switch {
		case p.Type == "type.googleapis.com/envoy.config.listener.v3.Listener" && strings.HasSuffix(ptr(p.Operation.Path), "/http_filters/0"):
			filters++
			checkGolangFilter(t, val.Raw)
		case p.Type == "type.googleapis.com/envoy.config.cluster.v3.Cluster":
			clusters++
			var c clusterv3.Cluster
			if err := protojson.Unmarshal(val.Raw, &c); err != nil {
				t.Fatalf("cluster patch: %v", err)
			}
			if err := c.ValidateAll(); err != nil || c.GetType() != clusterv3.Cluster_ORIGINAL_DST || c.GetName() != p.Name {
				t.Errorf("cluster %s: %v, type %v", c.GetName(), err, c.GetType())
			}
			// The manifest spells the filter's keys; they must be protocol's.
			od := c.GetOriginalDstLbConfig()
			md := od.GetMetadataKey()
			if od.GetHttpHeaderName() != protocol.HeaderDestination || md.GetKey() != protocol.MetadataNamespaceLB ||
				len(md.GetPath()) != 1 || md.GetPath()[0].GetKey() != protocol.MetadataKeyDestination {
				t.Errorf("cluster %s reads header %q, metadata %v: want %s and %s/%s", c.GetName(), od.GetHttpHeaderName(), md,
					protocol.HeaderDestination, protocol.MetadataNamespaceLB, protocol.MetadataKeyDestination)
			}
		}
	}
	if filters != 1 || clusters != 1 {
		t.Errorf("%d filter and %d cluster patches, want one each", filters, clusters)
	}
}

func ptr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func checkGolangFilter(t *testing.T, raw []byte) {
	t.Helper()
	var f hcmv3.HttpFilter
	if err := protojson.Unmarshal(raw, &f); err != nil {
		t.Fatalf("filter patch: %v", err)
	}
	if err := f.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	var g golangv3alpha.Config
	if err := f.GetTypedConfig().UnmarshalTo(&g); err != nil {
		t.Fatalf("filter patch is not a golang filter: %v", err)
	}
	if err := g.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	if g.GetLibraryPath() != spec.DefaultLibraryPath || g.GetPluginName() != protocol.PluginName {
		t.Errorf("library %q plugin %q: want the image's %s and plugin %s", g.GetLibraryPath(), g.GetPluginName(), spec.DefaultLibraryPath, protocol.PluginName)
	}
	fc, err := config.FromAny(g.GetPluginConfig())
	if err != nil {
		t.Fatalf("the filter would refuse its plugin_config: %v", err)
	}
	// The patch adds ORIGINAL_DST clusters, which parse a single address.
	for _, p := range fc.Pools {
		if p.Destination.Effective() != config.DestinationOriginalDst {
			t.Errorf("pool %s: destination %q, but its cluster is ORIGINAL_DST", p.Name, p.Destination.Effective())
		}
	}
}
