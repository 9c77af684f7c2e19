package check

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/controlplane/xds"
)

func deployment(t *testing.T, objs []runtime.Object, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range of[*appsv1.Deployment](objs) {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

func configMaps(objs []runtime.Object) map[string]*corev1.ConfigMap {
	m := map[string]*corev1.ConfigMap{}
	for _, cm := range of[*corev1.ConfigMap](objs) {
		m[cm.Name] = cm
	}
	return m
}

// resolve is ResolvePodPath for the first container of d.
func resolve(t *testing.T, objs []runtime.Object, d *appsv1.Deployment, p string) PodFile {
	t.Helper()
	f, err := ResolvePodPath(d.Spec.Template.Spec, d.Spec.Template.Spec.Containers[0], configMaps(objs), p)
	if err != nil {
		t.Fatalf("%s: %v", d.Name, err)
	}
	return f
}

// kubeBootstrap is the bootstrap the Envoy Deployment runs (its -c file).
func kubeBootstrap(t *testing.T, objs []runtime.Object) *bootstrapv3.Bootstrap {
	t.Helper()
	d := deployment(t, objs, "inflow-envoy")
	c, ok := flagShort(d.Spec.Template.Spec.Containers[0].Args, "-c")
	if !ok {
		t.Fatalf("inflow-envoy args %v: no -c", d.Spec.Template.Spec.Containers[0].Args)
	}
	f := resolve(t, objs, d, c)
	if f.ConfigMap == "" {
		t.Fatalf("-c %s is not a ConfigMap file", c)
	}
	b, err := ParseBootstrap([]byte(f.Data))
	if err != nil {
		t.Fatalf("bootstrap %s: %v", c, err)
	}
	return b
}

func xdsCluster(t *testing.T, b *bootstrapv3.Bootstrap) *clusterv3.Cluster {
	t.Helper()
	name := b.GetDynamicResources().GetAdsConfig().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("no ADS cluster %q", name)
	return nil
}

// TestKubernetesXDSIsMutualTLS: on Kubernetes, the control plane requires
// client certificates and Envoy presents one. Envoy's bootstrap is the
// repository's envoy.yaml plus exactly the TLS transport socket; the
// certificates come from mounted Secrets through SDS files that watch
// their directory (rotation without a restart), and the server name Envoy
// checks is the Service it dials.
func TestKubernetesXDSIsMutualTLS(t *testing.T) {
	objs := build(t, "build/k8s")
	b := kubeBootstrap(t, objs)
	plain, err := Bootstrap(filepath.Join(root(t), "envoy.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	without := proto.Clone(b).(*bootstrapv3.Bootstrap)
	xdsCluster(t, without).TransportSocket = nil
	if !proto.Equal(without, plain) {
		t.Error("build/k8s/envoy/bootstrap/envoy.yaml differs from envoy.yaml beyond the xDS transport socket")
	}
	host, _, err := ControlPlaneAddress(b)
	if err != nil {
		t.Fatal(err)
	}
	var up tlsv3.UpstreamTlsContext
	if err := xdsCluster(t, b).GetTransportSocket().GetTypedConfig().UnmarshalTo(&up); err != nil {
		t.Fatalf("xDS transport socket: %v", err)
	}
	if up.GetSni() != host {
		t.Errorf("sni %q, want the Service %q", up.GetSni(), host)
	}
	envoy := deployment(t, objs, "inflow-envoy")
	sds := func(cfg *tlsv3.SdsSecretConfig) *tlsv3.Secret {
		t.Helper()
		f := resolve(t, objs, envoy, cfg.GetSdsConfig().GetPathConfigSource().GetPath())
		s, err := SDSFile([]byte(f.Data))
		if err != nil {
			t.Fatalf("SDS file %s: %v", f.Key, err)
		}
		if s.GetName() != cfg.GetName() {
			t.Errorf("SDS file %s holds secret %q, Envoy asks for %q", f.Key, s.GetName(), cfg.GetName())
		}
		return s
	}
	cc := up.GetCommonTlsContext()
	if len(cc.GetTlsCertificateSdsSecretConfigs()) != 1 {
		t.Fatal("Envoy presents no client certificate")
	}
	cert := sds(cc.GetTlsCertificateSdsSecretConfigs()[0]).GetTlsCertificate()
	val := sds(cc.GetValidationContextSdsSecretConfig()).GetValidationContext()
	clientSecret := checkSecretFiles(t, objs, envoy, map[string]string{
		cert.GetCertificateChain().GetFilename(): "tls.crt",
		cert.GetPrivateKey().GetFilename():       "tls.key",
		val.GetTrustedCa().GetFilename():         "ca.crt",
	})
	for _, w := range []string{cert.GetWatchedDirectory().GetPath(), val.GetWatchedDirectory().GetPath()} {
		if w != path.Dir(cert.GetCertificateChain().GetFilename()) {
			t.Errorf("watched_directory %q: rotated certificates would not be seen", w)
		}
	}
	if sans := val.GetMatchTypedSubjectAltNames(); len(sans) != 1 || sans[0].GetMatcher().GetExact() != host {
		t.Errorf("Envoy checks server names %v, want exactly %q", sans, host)
	}

	cp := deployment(t, objs, "inflow-controlplane")
	args := cp.Spec.Template.Spec.Containers[0].Args
	files := map[string]string{}
	for flag, key := range map[string]string{"xds-tls-cert": "tls.crt", "xds-tls-key": "tls.key", "xds-client-ca": "ca.crt"} {
		v, ok := FlagValue(args, flag)
		if !ok {
			t.Fatalf("the control plane runs without --%s: xDS would be plain text", flag)
		}
		files[v] = key
	}
	serverSecret := checkSecretFiles(t, objs, cp, files)
	if serverSecret == clientSecret {
		t.Error("Envoy and the control plane must not share one key pair")
	}
}

// checkSecretFiles: each path (-> expected key) is that key of one mounted,
// required Secret, whose name it returns.
func checkSecretFiles(t *testing.T, objs []runtime.Object, d *appsv1.Deployment, files map[string]string) string {
	t.Helper()
	var secret string
	for p, key := range files {
		f := resolve(t, objs, d, p)
		switch {
		case f.Secret == "":
			t.Errorf("%s: %s comes from ConfigMap %s; key material belongs in a Secret", d.Name, p, f.ConfigMap)
		case f.Key != key || f.Optional:
			t.Errorf("%s: %s is key %q of Secret %s (optional %v), want required key %q", d.Name, p, f.Key, f.Secret, f.Optional, key)
		case secret != "" && secret != f.Secret:
			t.Errorf("%s: TLS files from two Secrets (%s, %s)", d.Name, secret, f.Secret)
		}
		secret = f.Secret
	}
	return secret
}

// TestXDSCertsScript runs build/k8s/xds-certs.sh as a user would (with
// --out instead of kubectl) and proves its certificates work together: a
// TLS handshake between the control plane's own mTLS config and an Envoy
// client config, for the Service name envoy.yaml dials.
func TestXDSCertsScript(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is needed (make deps installs it)")
	}
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(root(t), "build/k8s/xds-certs.sh"), "--out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xds-certs.sh: %v\n%s", err, b)
	}
	server := xds.MTLSFiles{
		CertFile: filepath.Join(out, "server/tls.crt"), KeyFile: filepath.Join(out, "server/tls.key"),
		ClientCAFile: filepath.Join(out, "server/ca.crt"),
	}
	srvCfg, err := server.ServerConfig(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(out, "client/tls.crt"), filepath.Join(out, "client/tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(out, "client/ca.crt"))
	if err != nil || !roots.AppendCertsFromPEM(ca) {
		t.Fatalf("client ca.crt: %v", err)
	}
	for _, name := range []string{"controlplane", "controlplane.inflow.svc.cluster.local"} {
		handshake(t, srvCfg, &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: roots, ServerName: name, NextProtos: []string{"h2"}})
	}
	// The key never leaves the files it was written to.
	for _, f := range []string{"server/tls.key", "client/tls.key"} {
		st, err := os.Stat(filepath.Join(out, f))
		if err != nil || st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v (%v), want private", f, st.Mode(), err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(out, "client/tls.crt")); err != nil {
		t.Fatal(err)
	} else if blk, _ := pem.Decode(b); blk == nil {
		t.Fatal("client/tls.crt is not PEM")
	} else if c, err := x509.ParseCertificate(blk.Bytes); err != nil || c.IsCA {
		t.Errorf("client certificate: %v, CA %v", err, c.IsCA)
	}
}

func handshake(t *testing.T, srv, cli *tls.Config) {
	t.Helper()
	a, b := net.Pipe()
	defer func() {
		if err := errors.Join(a.Close(), b.Close()); err != nil {
			t.Error(err)
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- tls.Server(a, srv).Handshake() }()
	cerr := tls.Client(b, cli).Handshake()
	serr := <-errc
	if cerr != nil || serr != nil {
		t.Errorf("mTLS handshake for %s: client %v, server %v", cli.ServerName, cerr, serr)
	}
}

// TestKubernetesBackendKeys: every backend key the control plane's config
// names is an SDS file shipped in a ConfigMap, whose secret (the right
// name) reads the key from a file the same projected volume takes from a
// Secret: no key is in any manifest, and both files update in place.
func TestKubernetesBackendKeys(t *testing.T) {
	objs := build(t, "build/k8s")
	cfg := kubeControlPlaneConfig(t, objs)
	envoy := deployment(t, objs, "inflow-envoy")
	var checked int
	for _, b := range cfg.Backends {
		if b.APIKey == nil {
			continue
		}
		checked++
		f := resolve(t, objs, envoy, b.APIKey.SecretFile)
		if f.ConfigMap == "" {
			t.Errorf("backend %s: %s is not a shipped SDS file", b.Name, b.APIKey.SecretFile)
			continue
		}
		s, err := SDSFile([]byte(f.Data))
		if err != nil {
			t.Fatalf("backend %s: %v", b.Name, err)
		}
		if s.GetName() != b.EffectiveSecretName() {
			t.Errorf("backend %s: the SDS file holds secret %q, Envoy asks for %q", b.Name, s.GetName(), b.EffectiveSecretName())
		}
		keyFile := s.GetGenericSecret().GetSecret().GetFilename()
		if path.Dir(keyFile) != path.Dir(b.APIKey.SecretFile) {
			t.Errorf("backend %s: key file %q is outside the watched directory %s", b.Name, keyFile, path.Dir(b.APIKey.SecretFile))
		}
		if k := resolve(t, objs, envoy, keyFile); k.Secret == "" {
			t.Errorf("backend %s: key file %s comes from ConfigMap %s", b.Name, keyFile, k.ConfigMap)
		}
	}
	if checked == 0 {
		t.Fatal("the Kubernetes config has no backend with a key: nothing shows the wiring")
	}
}

func kubeControlPlaneConfig(t *testing.T, objs []runtime.Object) *spec.Config {
	t.Helper()
	cp := deployment(t, objs, "inflow-controlplane")
	p, _ := FlagValue(cp.Spec.Template.Spec.Containers[0].Args, "config")
	f := resolve(t, objs, cp, p)
	c, err := spec.Parse([]byte(f.Data))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
