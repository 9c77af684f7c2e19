package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/inflow-gateway/inflow/filter/protocol"
)

// ExtProcPlugin is the plugin name of the host's ext_proc client
// (e2e/testfilters/extproc), whose config is Envoy's ExternalProcessor.
const (
	ExtProcPlugin  = "extproc"
	ExtProcTypeURL = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
)

// Request body modes of the ext_proc client (Envoy's ProcessingMode names).
const (
	Buffered   = "BUFFERED"
	FullDuplex = "FULL_DUPLEX_STREAMED"
)

// ExtProcConfig is the ExternalProcessor (proto3 JSON) an endpoint picker
// is used with: request headers and the request body in mode, nothing of
// the response (the picker's job is done before it), the envoy.lb and
// io.inflow metadata accepted (Envoy drops any other). target is a gRPC target (unix:///path, ip:port).
func ExtProcConfig(target, mode string) map[string]any {
	trailers := "SKIP"
	if mode == FullDuplex {
		trailers = "SEND" // Envoy requires it with FULL_DUPLEX_STREAMED
	}
	return map[string]any{
		"grpc_service": map[string]any{"google_grpc": map[string]any{"target_uri": target, "stat_prefix": "epp"}},
		"processing_mode": map[string]any{
			"request_header_mode": "SEND", "response_header_mode": "SKIP",
			"request_body_mode": mode, "response_body_mode": "NONE",
			"request_trailer_mode": trailers, "response_trailer_mode": "SKIP",
		},
		"message_timeout":  "10s",
		"metadata_options": map[string]any{"receiving_namespaces": map[string]any{"untyped": []string{protocol.MetadataNamespaceLB, protocol.MetadataNamespaceInflow}}},
	}
}

// ExtProcHost is HostOptions for the ext_proc client talking to target.
func ExtProcHost(target, mode string) HostOptions {
	return HostOptions{PluginName: ExtProcPlugin, ConfigTypeURL: ExtProcTypeURL, Config: ExtProcConfig(target, mode)}
}

// Process is a server process a test runs (inflow-epp, the EPP).
type Process struct {
	cmd  *exec.Cmd
	errs *SyncBuffer
	done chan struct{}
	err  error
}

// start runs cmd and waits until ready returns true for a line of its
// stderr (every line is kept for Stderr) or, when poll is set, until poll
// does.
func start(ctx context.Context, cmd *exec.Cmd, what string, ready func(line string) bool, poll func() bool) (*Process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &Process{cmd: cmd, errs: &SyncBuffer{}, done: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.errs.Write([]byte(line + "\n"))
			if !signalled && ready(line) {
				signalled = true
				close(found)
			}
		}
		_, _ = io.Copy(p.errs, stderr)
		p.err = cmd.Wait()
		close(p.done)
	}()
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-found:
			return p, nil
		case <-tick.C:
			if poll != nil && poll() {
				return p, nil
			}
		case <-p.done:
			return nil, fmt.Errorf("%s exited before it was ready (%v): %s", what, p.err, p.errs.String())
		case <-deadline.C:
			p.Close()
			return nil, fmt.Errorf("%s was not ready within %v: %s", what, startTimeout, p.errs.String())
		case <-ctx.Done():
			p.Close()
			return nil, ctx.Err()
		}
	}
}

// Close kills the process and waits for it.
func (p *Process) Close() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Exited reports whether the process has exited, and its error.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stderr is what the process logged so far.
func (p *Process) Stderr() string { return p.errs.String() }

// CPUTime is the CPU time the process has used so far.
func (p *Process) CPUTime() time.Duration { return ProcessCPU(p.cmd.Process.Pid) }

// InflowEPP is a running inflow-epp.
type InflowEPP struct {
	*Process
	Target string // gRPC target of its ext_proc service
	Admin  string // ip:port of /metrics
	Config string // the config file it watches ("" when it follows a control plane)
}

// StartInflowEPP runs build/out/inflow-epp with cfg (the filter config)
// on a Unix socket in dir.
func StartInflowEPP(ctx context.Context, dir string, cfg any) (*InflowEPP, error) {
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "inflow-epp.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	e, err := startInflowEPP(ctx, dir, "--config", path)
	if e != nil {
		e.Config = path
	}
	return e, err
}

// StartInflowEPPFollowing runs inflow-epp taking its filter config from
// the control plane at xds (ip:port) over ADS.
func StartInflowEPPFollowing(ctx context.Context, dir, xds string) (*InflowEPP, error) {
	return startInflowEPP(ctx, dir, "--xds", xds)
}

func startInflowEPP(ctx context.Context, dir string, source ...string) (*InflowEPP, error) {
	sock := filepath.Join(dir, "epp.sock")
	e := &InflowEPP{Target: "unix://" + sock}
	// Port 0: the admin line of the log says which port it got.
	args := append(source, "--listen", e.Target, "--admin", "127.0.0.1:0")
	var err error
	e.Process, err = start(ctx, exec.Command(Out("inflow-epp"), args...), "inflow-epp", func(line string) bool {
		if strings.Contains(line, "msg=admin") {
			e.Admin, _ = field(line, "address=")
		}
		return e.Admin != ""
	}, nil)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// field reads key=value from a log line.
func field(line, key string) (string, bool) {
	i := strings.Index(line, key)
	if i < 0 {
		return "", false
	}
	v := line[i+len(key):]
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return strings.Trim(v, `"`), v != ""
}

// Metrics reads the admin /metrics into name{labels} -> value.
func (e *InflowEPP) Metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.Admin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}
