// Package egrun runs the real Envoy Gateway for tests, without Docker or
// Kubernetes: its standalone mode (provider Custom, resources from files,
// infrastructure Host), with the certificates its own certgen makes. It
// serves xDS on its fixed port 18000 with mutual TLS; an xDS client must
// send node.cluster = the Gateway's "namespace/name" (its IR key,
// internal/xds/cache/snapshotcache.go getNodeIDs).
//
// The binary is built by `make envoy-gateway` (bin/envoygateway/<version>);
// INFLOW_ENVOY_GATEWAY names it. Envoy Gateway's Host infrastructure tries
// to download an Envoy to run; that fails here (no network), is logged, and
// Envoy Gateway keeps serving xDS, which is all the tests need.
package egrun

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"
)

// XDSAddr is where Envoy Gateway serves xDS: its port is fixed
// (internal/xds/bootstrap DefaultXdsServerPort), as are 18002 (its Wasm
// HTTP server) and 8081 (the File provider's health probe).
const XDSAddr = "127.0.0.1:18000"

var fixedPorts = []string{":18000", ":18002", ":8081"}

// ErrUnavailable means the binary is missing; tests skip on it unless
// INFLOW_REQUIRE_ENVOY_GATEWAY is set.
var ErrUnavailable = errors.New("envoy gateway binary not built (make envoy-gateway)")

// Binary is the envoy-gateway executable to run.
func Binary() (string, error) {
	p := os.Getenv("INFLOW_ENVOY_GATEWAY")
	if p == "" {
		return "", fmt.Errorf("%w: INFLOW_ENVOY_GATEWAY is not set", ErrUnavailable)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return p, nil
}

// Required reports whether a missing binary is a failure (make test).
func Required() bool { return os.Getenv("INFLOW_REQUIRE_ENVOY_GATEWAY") != "" }

// Options say what Envoy Gateway serves.
type Options struct {
	Binary string
	// Dir holds its config, certificates and state (a test's TempDir).
	Dir string
	// Resources are the Gateway API (and InferencePool, Backend) objects,
	// YAML documents, as its File provider reads them.
	Resources string
	// Extension is the extension server's ip:port; empty runs Envoy
	// Gateway without one.
	Extension string
	// Hooks are the post-translation hooks Envoy Gateway calls.
	Hooks []string
	// Log receives Envoy Gateway's output.
	Log io.Writer
}

// EnvoyGateway is a running envoy-gateway server.
type EnvoyGateway struct {
	// ClientTLS is the certificate its certgen made for Envoy proxies.
	ClientTLS *tls.Config
	// ResourceFile is the file its File provider watches; rewriting it
	// makes Envoy Gateway translate again.
	ResourceFile string

	cmd    *exec.Cmd
	unlock func()
	done   chan error
	closed sync.Once
}

// Start runs certgen, then the server, and returns once xDS is served. Its
// fixed ports make it one per machine: Start waits for a machine-wide lock
// (other worktrees run the same tests).
func Start(ctx context.Context, o Options) (*EnvoyGateway, error) {
	unlock, err := lock(ctx)
	if err != nil {
		return nil, err
	}
	eg, err := start(ctx, o)
	if err != nil {
		unlock()
		return nil, err
	}
	eg.unlock = unlock
	return eg, nil
}

func start(ctx context.Context, o Options) (*EnvoyGateway, error) {
	for _, p := range fixedPorts {
		l, err := net.Listen("tcp", p)
		if err != nil {
			return nil, fmt.Errorf("egrun: Envoy Gateway needs port %s, which is taken: %w", p, err)
		}
		l.Close()
	}
	home := filepath.Join(o.Dir, "home")
	resources := filepath.Join(o.Dir, "resources")
	if err := os.MkdirAll(resources, 0o755); err != nil {
		return nil, err
	}
	eg := &EnvoyGateway{ResourceFile: filepath.Join(resources, "resources.yaml"), done: make(chan error, 1)}
	if err := os.WriteFile(eg.ResourceFile, []byte(o.Resources), 0o644); err != nil {
		return nil, err
	}
	cfg, err := configFile(o, home, resources)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(o.Dir, "envoy-gateway.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return nil, err
	}
	certgen := exec.CommandContext(ctx, o.Binary, "certgen", "--local", "--config-home", filepath.Join(home, "config"))
	if out, err := certgen.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("egrun: certgen: %w\n%s", err, out)
	}
	certs := filepath.Join(home, "config", "certs", "envoy")
	if eg.ClientTLS, err = clientTLS(certs); err != nil {
		return nil, err
	}
	eg.cmd = exec.Command(o.Binary, "server", "--config-path", cfgPath)
	eg.cmd.Stdout, eg.cmd.Stderr = o.Log, o.Log
	eg.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := eg.cmd.Start(); err != nil {
		return nil, fmt.Errorf("egrun: %w", err)
	}
	go func() { eg.done <- eg.cmd.Wait() }()
	if err := eg.awaitXDS(ctx); err != nil {
		eg.stop()
		return nil, err
	}
	return eg, nil
}

func (eg *EnvoyGateway) awaitXDS(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-eg.done:
			return fmt.Errorf("egrun: envoy-gateway exited before serving xDS: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if c, err := net.DialTimeout("tcp", XDSAddr, time.Second); err == nil {
			c.Close()
			return nil
		}
	}
	return errors.New("egrun: envoy-gateway did not serve xDS within 60 s")
}

// Close stops Envoy Gateway and releases the machine-wide lock.
func (eg *EnvoyGateway) Close() error {
	eg.closed.Do(func() {
		eg.stop()
		eg.unlock()
	})
	return nil
}

func (eg *EnvoyGateway) stop() {
	_ = eg.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-eg.done:
	case <-time.After(10 * time.Second):
		_ = eg.cmd.Process.Kill()
		<-eg.done
	}
}

// UpdateResources replaces the resources; Envoy Gateway translates again.
func (eg *EnvoyGateway) UpdateResources(yamlDocs string) error {
	tmp := eg.ResourceFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(yamlDocs), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, eg.ResourceFile)
}

// configFile is the EnvoyGateway config of standalone mode.
func configFile(o Options, home, resources string) ([]byte, error) {
	hostPaths := map[string]any{}
	for k, v := range map[string]string{"configHome": "config", "dataHome": "data", "stateHome": "state", "runtimeDir": "run"} {
		hostPaths[k] = filepath.Join(home, v)
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"apiVersion": "gateway.envoyproxy.io/v1alpha1",
		"kind":       "EnvoyGateway",
		"gateway":    map[string]any{"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"},
		"provider": map[string]any{"type": "Custom", "custom": map[string]any{
			"resource":       map[string]any{"type": "File", "file": map[string]any{"paths": []string{resources}}},
			"infrastructure": map[string]any{"type": "Host", "host": hostPaths},
		}},
		"logging":       map[string]any{"level": map[string]any{"default": "info"}},
		"admin":         map[string]any{"address": map[string]any{"host": "127.0.0.1", "port": adminPort}},
		"telemetry":     map[string]any{"metrics": map[string]any{"prometheus": map[string]any{"disable": true}}},
		"extensionApis": map[string]any{"enableBackend": true},
	}
	if o.Extension != "" {
		host, port, err := net.SplitHostPort(o.Extension)
		if err != nil {
			return nil, fmt.Errorf("egrun: extension address: %w", err)
		}
		cfg["extensionManager"] = ExtensionManager(host, port, o.Hooks)
	}
	return yaml.Marshal(cfg)
}

// ExtensionManager is the extensionManager section Inflow's extension
// server needs (also in build/k8s/envoy-gateway's Envoy Gateway config):
// the hooks it implements, InferencePool as a backend resource, and where
// the server listens.
func ExtensionManager(host, port string, hooks []string) map[string]any {
	var p int
	fmt.Sscan(port, &p)
	return map[string]any{
		// PostTranslateModify gets the clusters only, never TLS keys
		"hooks": map[string]any{"xdsTranslator": map[string]any{"post": hooks, "translation": map[string]any{
			"cluster": map[string]any{"includeAll": true}, "secret": map[string]any{"includeAll": false},
		}}},
		"service": map[string]any{"ip": map[string]any{"address": host, "port": p}},
		"backendResources": []map[string]string{
			{"group": "inference.networking.k8s.io", "version": "v1", "kind": "InferencePool"},
		},
	}
}

func clientTLS(dir string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("egrun: certgen's envoy certificate: %w", err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("egrun: certgen's ca.crt holds no certificate")
	}
	// Envoy Gateway's certificate names its in-cluster Service.
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: "envoy-gateway", MinVersion: tls.VersionTLS13}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockPath serialises Envoy Gateway runs across the machine's worktrees.
var lockPath = filepath.Join(os.TempDir(), "inflow-envoy-gateway.lock")

func lock(ctx context.Context) (func(), error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("egrun: waiting for %s: %w", lockPath, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Docs joins YAML documents (each may be several, as Docs returns them).
func Docs(docs ...string) string {
	var b bytes.Buffer
	for _, d := range docs {
		d = strings.TrimSpace(d)
		if !strings.HasPrefix(d, "---") {
			b.WriteString("---\n")
		}
		b.WriteString(d)
		b.WriteString("\n")
	}
	return b.String()
}
