package check

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/inflow-gateway/inflow/e2e/demo"
)

const composeFile = "e2e/docker-compose.yaml"

// loadCompose loads the demo the way `docker compose` does (compose-go is
// its loader): schema validation, interpolation, path resolution.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	path := filepath.Join(root(t), composeFile)
	opts, err := cli.NewProjectOptions([]string{path}, cli.WithWorkingDirectory(filepath.Dir(path)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("compose-go: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// published maps container port -> "hostIP:published" for s.
func published(s types.ServiceConfig) map[uint32]string {
	m := map[uint32]string{}
	for _, p := range s.Ports {
		m[p.Target] = p.HostIP + ":" + p.Published
	}
	return m
}

func TestComposeImagesAndBuilds(t *testing.T) {
	v := versions(t)
	p := loadCompose(t)
	want := map[string]string{
		"envoy": v.InflowEnvoyImage(), "controlplane": v.ControlPlaneImage(),
		"vllm-a": v.SimImage(), "vllm-b": v.SimImage(), "vllm-c": v.SimImage(),
	}
	if names := p.ServiceNames(); len(names) != len(want) {
		t.Errorf("services %v, want %d", names, len(want))
	}
	for name, image := range want {
		s := service(t, p, name)
		if s.Image != image {
			t.Errorf("%s: image %q, want %q", name, s.Image, image)
		}
		if s.Build == nil {
			continue
		}
		df := filepath.Join(s.Build.Context, s.Build.Dockerfile)
		if s.Build.Context != root(t) {
			t.Errorf("%s: build context %s, want the repository root", name, s.Build.Context)
		}
		if _, err := os.Stat(df); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"envoy", "controlplane"} {
		if service(t, p, name).Build == nil {
			t.Errorf("%s has no build: make demo would need a pushed image", name)
		}
	}
}

// TestComposeEnvoy: the Envoy the demo runs has a valid bootstrap (envoy.yaml
// with the demo's --config-yaml merged over it), reaches the control plane
// by its service name and xDS port, and publishes the listener the control
// plane configures and the admin port the bootstrap binds.
func TestComposeEnvoy(t *testing.T) {
	r := root(t)
	p := loadCompose(t)
	envoy, cp := service(t, p, "envoy"), service(t, p, "controlplane")
	args := []string(envoy.Command)
	c, ok := FlagValue(args, "c")
	if !ok {
		c, ok = flagShort(args, "-c")
	}
	if !ok || c != "/etc/envoy/envoy.yaml" {
		t.Fatalf("envoy command %v: want -c /etc/envoy/envoy.yaml (the image's copy of envoy.yaml)", args)
	}
	b, err := Bootstrap(filepath.Join(r, "envoy.yaml"), args)
	if err != nil {
		t.Fatalf("effective bootstrap: %v", err)
	}
	host, port, err := ControlPlaneAddress(b)
	if err != nil {
		t.Fatal(err)
	}
	xds, _ := FlagValue(cp.Command, "xds-address")
	if xdsPort, err := Port(xds); host != cp.Name || err != nil || xdsPort != port {
		t.Errorf("envoy.yaml dials %s:%d; the control plane is service %q serving xDS on %q", host, port, cp.Name, xds)
	}
	pub := published(envoy)
	admin := b.GetAdmin().GetAddress().GetSocketAddress()
	if admin.GetAddress() != "0.0.0.0" || pub[admin.GetPortValue()] == "" {
		t.Errorf("admin on %s:%d, published %v: the demo's admin must be reachable", admin.GetAddress(), admin.GetPortValue(), pub)
	}
	cfg := demoConfig(t)
	for _, l := range cfg.Spec.Listeners {
		if pub[l.Port] == "" {
			t.Errorf("listener %s port %d is not published (%v)", l.Name, l.Port, pub)
		}
	}
	for port, hostPort := range pub {
		if h, _, _ := net.SplitHostPort(hostPort); h != "127.0.0.1" {
			t.Errorf("port %d published on %q: the demo binds the host's loopback only", port, hostPort)
		}
	}
}

// TestComposeControlPlane: it serves the demo config file, mounted from
// the path demo-local reads, and publishes its admin port.
func TestComposeControlPlane(t *testing.T) {
	p := loadCompose(t)
	cp := service(t, p, "controlplane")
	cfgPath, ok := FlagValue(cp.Command, "config")
	if !ok {
		t.Fatalf("controlplane command %v has no --config", cp.Command)
	}
	var mounted bool
	for _, v := range cp.Volumes {
		if v.Target != cfgPath {
			continue
		}
		mounted = true
		if v.Source != filepath.Join(root(t), demo.ConfigPath) || !v.ReadOnly {
			t.Errorf("%s is mounted from %s (read-only %v), want %s read-only", cfgPath, v.Source, v.ReadOnly, demo.ConfigPath)
		}
		if _, err := os.Stat(v.Source); err != nil {
			t.Error(err)
		}
	}
	if !mounted {
		t.Errorf("--config %s is not a mounted file", cfgPath)
	}
	admin, _ := FlagValue(cp.Command, "admin-address")
	if port, err := Port(admin); err != nil || published(cp)[port] == "" {
		t.Errorf("admin %q not published (%v)", admin, cp.Ports)
	}
}

func demoConfig(t *testing.T) *demo.Config {
	t.Helper()
	c, err := demo.LoadConfig(filepath.Join(root(t), demo.ConfigPath))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestComposeModelServers: the three simulators sit at the pool's
// endpoints (fixed addresses in the network's subnet, listening on the
// endpoint's port), serve the base model and the adapters the control-plane
// config rewrites to, and have the loads demo-local gives its simulators.
func TestComposeModelServers(t *testing.T) {
	p := loadCompose(t)
	cfg := demoConfig(t)
	if len(p.Networks) != 1 {
		t.Fatalf("networks %v, want one", p.Networks)
	}
	var subnet *net.IPNet
	var netName string
	for name, n := range p.Networks {
		netName = name
		if len(n.Ipam.Config) != 1 {
			t.Fatalf("network %s: want one ipam subnet", name)
		}
		var err error
		if _, subnet, err = net.ParseCIDR(n.Ipam.Config[0].Subnet); err != nil {
			t.Fatal(err)
		}
	}
	if len(cfg.Endpoints) != len(demo.Servers) {
		t.Fatalf("%d endpoints, %d demo servers", len(cfg.Endpoints), len(demo.Servers))
	}
	for i, ep := range cfg.Endpoints {
		want := demo.Servers[i]
		t.Run(want.Name, func(t *testing.T) {
			s := service(t, p, want.Name)
			host, port, err := net.SplitHostPort(ep)
			if err != nil {
				t.Fatal(err)
			}
			n := s.Networks[netName]
			if n == nil || n.Ipv4Address != host {
				t.Errorf("endpoint %s: service %s has address %v on %s", ep, want.Name, n, netName)
			}
			if !subnet.Contains(net.ParseIP(host)) {
				t.Errorf("%s is outside the network's subnet %s", host, subnet)
			}
			args := []string(s.Command)
			flags := map[string]string{
				"port": port, "model": cfg.Base,
				"max-num-seqs": strconv.Itoa(want.MaxNumSeqs), "max-loras": strconv.Itoa(want.MaxLoRAs),
				"time-to-first-token": want.TTFT.String(), "inter-token-latency": want.ITL.String(),
				"time-factor-under-load": strconv.FormatFloat(want.LoadFactor, 'g', -1, 64),
			}
			for name, v := range flags {
				if got, _ := FlagValue(args, name); got != v {
					t.Errorf("--%s=%q, want %q", name, got, v)
				}
			}
			if !slices.Contains(args, "--force-dummy-tokenizer") {
				t.Error("without --force-dummy-tokenizer the simulator looks the model up on Hugging Face")
			}
			if got := loraNames(t, args); !slices.Equal(got, cfg.Adapters) {
				t.Errorf("--lora-modules %v, want the config's adapters %v", got, cfg.Adapters)
			}
			if pod := s.Environment["POD_NAME"]; pod == nil || *pod != want.Name {
				t.Errorf("POD_NAME %v, want %s (the x-inference-pod header)", pod, want.Name)
			}
		})
	}
}

// loraNames reads the simulator's --lora-modules: the JSON values up to the
// next flag, as its parser does.
func loraNames(t *testing.T, args []string) []string {
	t.Helper()
	i := slices.Index(args, "--lora-modules")
	if i < 0 {
		return nil
	}
	var names []string
	for _, a := range args[i+1:] {
		if len(a) > 1 && a[:2] == "--" {
			break
		}
		var m struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal([]byte(a), &m); err != nil || m.Name == "" {
			t.Errorf("--lora-modules value %q: %v", a, err)
			continue
		}
		names = append(names, m.Name)
	}
	return names
}

// flagShort returns the value after a single-dash flag like "-c".
func flagShort(args []string, flag string) (string, bool) {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1], true
	}
	return "", false
}

// TestComposeBackendKeys: every backend key of the demo config is an SDS
// file in a directory mounted (read-only, whole, so a replaced file is
// seen) into Envoy at the secret file's directory; the secret has the
// name Envoy asks for and reads the key from a file beside it that git
// ignores, so no key is ever part of the repository.
func TestComposeBackendKeys(t *testing.T) {
	p := loadCompose(t)
	envoy := service(t, p, "envoy")
	cfg := demoConfig(t)
	var checked int
	for _, b := range cfg.Spec.Backends {
		if b.APIKey == nil {
			continue
		}
		checked++
		dir := path.Dir(b.APIKey.SecretFile)
		var src string
		for _, v := range envoy.Volumes {
			if v.Target == dir {
				src = v.Source
				if !v.ReadOnly || v.Type != types.VolumeTypeBind {
					t.Errorf("%s: want a read-only bind mount, got %s read-only %v", dir, v.Type, v.ReadOnly)
				}
			}
		}
		if src == "" {
			t.Errorf("backend %s: nothing is mounted at %s", b.Name, dir)
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, path.Base(b.APIKey.SecretFile)))
		if err != nil {
			t.Fatal(err)
		}
		s, err := SDSFile(data)
		if err != nil {
			t.Fatalf("%s: %v", b.APIKey.SecretFile, err)
		}
		if s.GetName() != b.EffectiveSecretName() {
			t.Errorf("backend %s: the SDS file holds secret %q, Envoy asks for %q", b.Name, s.GetName(), b.EffectiveSecretName())
		}
		key := s.GetGenericSecret().GetSecret().GetFilename()
		if path.Dir(key) != dir {
			t.Errorf("backend %s: key file %q is outside the mounted directory %s", b.Name, key, dir)
		}
		if !gitIgnores(t, src, path.Base(key)) {
			t.Errorf("backend %s: %s is not git-ignored in %s", b.Name, path.Base(key), src)
		}
	}
	if checked == 0 {
		t.Fatal("the demo has no backend with a key: nothing shows the wiring")
	}
}

// gitIgnores reports whether dir/.gitignore has a pattern matching name.
func gitIgnores(t *testing.T, dir, name string) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ".gitignore"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if ok, _ := filepath.Match(line, name); ok {
			return true
		}
	}
	return false
}
