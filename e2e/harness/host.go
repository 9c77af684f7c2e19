// Package harness starts the envoyhost ABI test host and fake OpenAI-style
// backends for the e2e tests and the e2e load benchmark.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/inflow-gateway/inflow/e2e/hostxds"
	"github.com/inflow-gateway/inflow/filter/config"
	"github.com/inflow-gateway/inflow/filter/protocol"
)

// Plugin names of the test filters the host can load (Inflow's is
// protocol.PluginName).
const (
	PassthroughPlugin = "passthrough"
	PanickyPlugin     = "panicky"
	ConfigProbePlugin = "configprobe"
	typedStructURL    = "type.googleapis.com/xds.type.v3.TypedStruct"
	startTimeout      = 30 * time.Second
)

// Root returns the repository root (the directory holding go.mod).
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Out returns build/out/<name> under the repository root.
func Out(name string) string {
	root, err := Root()
	if err != nil {
		return name
	}
	return filepath.Join(root, "build", "out", name)
}

// Build builds inflow.so, the test filters, the host and inflow-epp with make, returning
// make's output in the error when it fails.
func Build(ctx context.Context) error {
	root, err := Root()
	if err != nil {
		return err
	}
	targets := []string{"build-filter", "build-host", "build-testfilters", "build-epp"}
	cmd := exec.CommandContext(ctx, "make", append([]string{"-C", root, "--no-print-directory"}, targets...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("make %s: %w\n%s", strings.Join(targets, " "), err, out)
	}
	return nil
}

// HostOptions configures one envoyhost process.
type HostOptions struct {
	Library    string // path of the .so; defaults to build/out/<PluginName>.so
	PluginName string
	// Config is the plugin config value (marshalled to JSON and wrapped in a
	// TypedStruct); RawConfig, when set, is written to the config file as is.
	Config    any
	RawConfig []byte
	// ConfigTypeURL is the TypedStruct's type_url: Inflow's filter config
	// unless set (the ext_proc client takes Envoy's ExternalProcessor).
	ConfigTypeURL string
	// RouteConfig, if set, is the per-route plugin config value merged over
	// Config (--route-plugin-config).
	RouteConfig     any
	Concurrency     int // default 2
	DefaultUpstream string
	BufferLimit     int
	LogLevel        string // default "warning"
	Env             []string
	// Listen and Admin are the ip:port of the proxy and admin listeners;
	// default 127.0.0.1:0 (a free port each). The demo fixes Listen so the
	// printed curl commands stay valid across runs.
	Listen, Admin string
}

// Host is a running envoyhost.
type Host struct {
	// Addr is the ip:port of the proxy listener: the static mode's one, or
	// an xDS-driven host's Listener (XDSHostOptions.Listener).
	Addr  string
	Admin string // ip:port of the admin listener
	cmd   *exec.Cmd
	errs  *SyncBuffer
	done  chan struct{}
	err   error

	mu        sync.Mutex
	listeners map[string]string // listener name -> bound ip:port
	seen      chan struct{}     // closed and replaced on every stdout line
	agent     *hostxds.Agent
	onClose   []func() // what the host was started with (a control plane), stopped after it
}

// staticListener is the static mode's listener name.
const staticListener = "static"

// SyncBuffer is a log that processes write to while tests read it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// WriteConfig writes the plugin config file for opts into dir.
func WriteConfig(dir string, opts HostOptions) (string, error) {
	data := opts.RawConfig
	if data == nil {
		value := opts.Config
		if value == nil {
			value = map[string]any{}
		}
		typeURL := opts.ConfigTypeURL
		if typeURL == "" {
			typeURL = config.TypeURL
		}
		var err error
		data, err = json.Marshal(map[string]any{
			"@type":    typedStructURL,
			"type_url": typeURL,
			"value":    value,
		})
		if err != nil {
			return "", err
		}
	}
	path := filepath.Join(dir, "plugin-config.json")
	return path, os.WriteFile(path, data, 0o600)
}

func writeTypedStruct(path string, value any) error {
	data, err := json.Marshal(map[string]any{"@type": typedStructURL, "type_url": config.TypeURL, "value": value})
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// StartHost runs envoyhost in its static mode (one listener, one route to
// an ORIGINAL_DST cluster, the plugin config from opts) and waits until it
// listens: the unit-level tests of the ABI and the state machine use it.
// Tests of routing, clusters and config updates use StartXDSHost. The
// caller must Close it.
func StartHost(ctx context.Context, dir string, opts HostOptions) (*Host, error) {
	if opts.Library == "" {
		opts.Library = Out(opts.PluginName + ".so")
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 2
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warning"
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.Admin == "" {
		opts.Admin = "127.0.0.1:0"
	}
	cfg, err := WriteConfig(dir, opts)
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--library", opts.Library, "--plugin-name", opts.PluginName, "--plugin-config", cfg,
		"--listen", opts.Listen, "--admin", opts.Admin, "--concurrency", fmt.Sprint(opts.Concurrency),
		"--log-level", opts.LogLevel,
		// the ORIGINAL_DST cluster reads where Inflow writes the endpoint
		"--original-dst-header", protocol.HeaderDestination,
		"--original-dst-metadata", protocol.MetadataNamespaceLB + "/" + protocol.MetadataKeyDestination}
	if opts.DefaultUpstream != "" {
		args = append(args, "--default-upstream", opts.DefaultUpstream)
	}
	if opts.BufferLimit > 0 {
		args = append(args, "--buffer-limit", fmt.Sprint(opts.BufferLimit))
	}
	if opts.RouteConfig != nil {
		path := filepath.Join(dir, "route-plugin-config.json")
		if err := writeTypedStruct(path, opts.RouteConfig); err != nil {
			return nil, err
		}
		args = append(args, "--route-plugin-config", path)
	}
	h, err := spawn(ctx, args, opts.Env)
	if err != nil {
		return nil, err
	}
	if h.Addr, err = h.ListenerAddr(ctx, staticListener); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// spawn runs envoyhost with args and waits for its admin address.
func spawn(ctx context.Context, args, env []string) (*Host, error) {
	cmd := exec.Command(Out("envoyhost"), args...)
	// Killed with us even if a test binary or the benchmark dies without
	// running its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// cgocheck=1 makes the Go runtime verify every pointer crossing the ABI.
	cmd.Env = append(append(os.Environ(), "GODEBUG=cgocheck=1"), env...)
	h := &Host{cmd: cmd, errs: &SyncBuffer{}, done: make(chan struct{}), listeners: map[string]string{}, seen: make(chan struct{})}
	cmd.Stderr = h.errs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		h.err = cmd.Wait()
		close(h.done)
	}()
	// stdout is read for the life of the process: the host prints a LISTEN
	// line whenever it binds a listener, and must never block on it
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			h.mu.Lock()
			switch {
			case len(f) == 3 && f[0] == "LISTEN":
				h.listeners[f[1]] = f[2]
			case len(f) == 2 && f[0] == "ADMIN":
				h.Admin = f[1]
			}
			close(h.seen)
			h.seen = make(chan struct{})
			h.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	if _, err := h.wait(ctx, func() (string, bool) { return h.Admin, h.Admin != "" }); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// wait blocks until get reports a value from the host's stdout.
func (h *Host) wait(ctx context.Context, get func() (string, bool)) (string, error) {
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		v, ok := get()
		ch := h.seen
		h.mu.Unlock()
		if ok {
			return v, nil
		}
		select {
		case <-ch:
		case <-h.done:
			return "", fmt.Errorf("envoyhost exited (%v): %s", h.err, h.errs.String())
		case <-deadline.C:
			return "", fmt.Errorf("envoyhost: not there within %v: %s", startTimeout, h.errs.String())
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// ListenerAddr waits until the host binds the named listener and returns
// its ip:port. An xDS-driven host binds a listener once its config arrived
// and warmed.
func (h *Host) ListenerAddr(ctx context.Context, name string) (string, error) {
	return h.wait(ctx, func() (string, bool) {
		a, ok := h.listeners[name]
		return a, ok
	})
}

// Close stops the host's xDS client, kills the host and waits for it.
func (h *Host) Close() {
	if h.agent != nil {
		h.agent.Close()
	}
	select {
	case <-h.done:
	default:
		_ = h.cmd.Process.Kill()
		<-h.done
	}
	for _, f := range h.onClose {
		f()
	}
	h.onClose = nil
}

// Exited reports whether the process has exited, and its error.
func (h *Host) Exited() (bool, error) {
	select {
	case <-h.done:
		return true, h.err
	default:
		return false, nil
	}
}

// Stderr returns what the host logged so far.
func (h *Host) Stderr() string { return h.errs.String() }

// URL returns the proxy URL for path.
func (h *Host) URL(path string) string { return "http://" + h.Addr + path }

// Stats reads the admin /stats page into a map.
func (h *Host) Stats(ctx context.Context) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.Admin+"/stats", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	stats := map[string]string{}
	for _, line := range strings.Split(string(body), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			stats[k] = v
		}
	}
	return stats, nil
}

// CPUTime returns the user+system CPU time the host process has used so far
// (from /proc; 0 if unavailable).
func (h *Host) CPUTime() time.Duration { return ProcessCPU(h.cmd.Process.Pid) }

// ProcessCPU is the user+system CPU time process pid has used so far
// (from /proc; 0 if unavailable).
func ProcessCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// fields after the ")" that ends the command name; utime and stime are
	// fields 14 and 15 of the line, in clock ticks (100 per second on Linux)
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(fields[11], &utime)
	fmt.Sscan(fields[12], &stime)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
