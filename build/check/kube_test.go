package check

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/inflow-gateway/inflow/controlplane/spec"
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
	// The control plane reads the API; Envoy's pod gives a token to its
	// credential sidecar alone, through a projected volume.
	automount := p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken
	if automount != (name == "inflow-controlplane") {
		t.Errorf("%s: automountServiceAccountToken %v", name, automount)
	}
	for _, c := range p.Containers {
		for _, m := range c.VolumeMounts {
			if m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount" && c.Name != "credentials" {
				t.Errorf("%s/%s: gets the service account token", name, c.Name)
			}
		}
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

// checkRBAC: namespaced Roles only, no wildcards; the control plane may read
// exactly what the Kubernetes source watches, update the status it reports,
// raise Events and hold its one Lease; only the Envoy pod's credential
// sidecar reads Secrets, and only named ones.
func checkRBAC(t *testing.T, objs []runtime.Object) {
	if len(of[*rbacv1.ClusterRole](objs)) != 0 || len(of[*rbacv1.ClusterRoleBinding](objs)) != 0 {
		t.Error("want no cluster-wide RBAC")
	}
	read := []string{"get", "list", "watch"}
	allowed := map[string][]string{ // group/resource -> verbs
		"/pods": read, "inference.networking.k8s.io/inferencepools": read, "inference.networking.x-k8s.io/inferenceobjectives": read,
		"aigateway.envoyproxy.io/aigatewayroutes": read, "aigateway.envoyproxy.io/aiservicebackends": read,
		"aigateway.envoyproxy.io/backendsecuritypolicies": read, "gateway.envoyproxy.io/backends": read,
		"inference.networking.k8s.io/inferencepools/status": {"update"}, "aigateway.envoyproxy.io/aigatewayroutes/status": {"update"},
		"/events": {"create", "patch"}, "coordination.k8s.io/leases": {"create", "get", "update"},
		"/secrets": read,
	}
	granted := map[string]map[string][]string{} // role -> group/resource -> verbs
	for _, r := range of[*rbacv1.Role](objs) {
		granted[r.Name] = map[string][]string{}
		for _, rule := range r.Rules {
			for _, list := range [][]string{rule.APIGroups, rule.Resources, rule.Verbs, rule.ResourceNames} {
				if slices.Contains(list, "*") {
					t.Errorf("Role %s rule %v has a wildcard", r.Name, rule)
				}
			}
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					key := g + "/" + res
					for _, v := range rule.Verbs {
						if !slices.Contains(allowed[key], v) {
							t.Errorf("Role %s: %s on %s is more than Inflow needs", r.Name, v, key)
						}
						granted[r.Name][key] = append(granted[r.Name][key], v)
					}
					switch {
					case key == "/secrets" && (r.Name != "inflow-credentials" || len(rule.ResourceNames) == 0):
						t.Errorf("Role %s reads Secrets %v: only the credential sidecar may, and only named ones", r.Name, rule.ResourceNames)
					case key == "coordination.k8s.io/leases" && !slices.Equal(rule.Verbs, []string{"create"}) &&
						!slices.Equal(rule.ResourceNames, []string{"inflow-controlplane-leader"}):
						t.Errorf("Role %s: leases %v beyond create must name the control plane's Lease", r.Name, rule.Verbs)
					}
				}
			}
		}
	}
	cp := granted["inflow-controlplane"]
	for key, verbs := range allowed {
		if key == "/secrets" {
			continue
		}
		for _, v := range verbs {
			if !slices.Contains(cp[key], v) {
				t.Errorf("the control plane's Role lacks %s on %s, which it needs", v, key)
			}
		}
	}
	if cp["/secrets"] != nil {
		t.Error("the control plane may read Secrets")
	}
	for _, v := range []string{"list", "watch"} {
		if !slices.Contains(granted["inflow-credentials"]["aigateway.envoyproxy.io/backendsecuritypolicies"], v) ||
			!slices.Contains(granted["inflow-credentials"]["/secrets"], v) {
			t.Errorf("the credential sidecar's Role lacks %s on policies or Secrets", v)
		}
	}
	bound := map[string]string{"inflow-controlplane": "inflow-controlplane", "inflow-credentials": "inflow-envoy"}
	for _, b := range of[*rbacv1.RoleBinding](objs) {
		if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != bound[b.RoleRef.Name] {
			t.Errorf("RoleBinding %s of Role %s: subjects %v", b.Name, b.RoleRef.Name, b.Subjects)
		}
	}
}

// TestCRDsFromTheModule: build/k8s/crds are the Inference Extension's own
// files at the version go.mod pins, byte for byte (`make crds` copies them).
func TestCRDsFromTheModule(t *testing.T) {
	r := root(t)
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api-inference-extension")
	cmd.Dir = r
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list the Inference Extension module: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	files, err := filepath.Glob(filepath.Join(r, "build", "k8s", "crds", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crds int
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		crds++
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(dir, "config", "crd", "bases", filepath.Base(f)))
		if err != nil {
			t.Fatalf("%s is not a CRD of the module: %v", filepath.Base(f), err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the module's: run make crds", filepath.Base(f))
		}
	}
	if crds != 2 {
		t.Errorf("%d CRDs, want InferencePool and InferenceObjective", crds)
	}
	objs := build(t, "build/k8s")
	var names []string
	for _, c := range of[*apiextensionsv1.CustomResourceDefinition](objs) {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"inferenceobjectives.inference.networking.x-k8s.io", "inferencepools.inference.networking.k8s.io"}) {
		t.Errorf("build/k8s ships CRDs %v", names)
	}
}
