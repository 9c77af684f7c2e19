// Command benchkube measures the Kubernetes source on a real kube-apiserver
// and etcd (envtest): 200 pods of one InferencePool flip readiness, and for
// each flip it times "pod status written -> the xDS the control plane
// serves reflects it", as an ADS client following the stream like Envoy
// sees it. The control plane is the real binary (build/out/
// inflow-controlplane) in its own process, so its CPU and memory are read
// from /proc alone. Then (-host, the default) the same pods roll through
// NotReady and back under load through envoyhost running inflow.so, driven
// by the control plane over xDS, timing "status written -> the host routes
// by it" and counting requests that reached a pod after the host had taken
// its removal (host.go).
//
//	make bench-kube     # go run ./e2e/benchkube -out docs/benchmarks.md
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	giev1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
	gieclient "sigs.k8s.io/gateway-api-inference-extension/client-go/clientset/versioned"

	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
)

const (
	ns = "bench"
	// model is what the AIGatewayRoute matches and the simulators serve.
	model = "gemma-2-9b"
	// scrapeInterval is the filter's metrics scrape of each pod in the
	// host phase: 200 simulators, the host and the API server share two
	// cores, so it is longer than the EPP's 50 ms default.
	scrapeInterval = "250ms"
)

func main() {
	pods := flag.Int("pods", 200, "pods in the pool")
	rate := flag.Float64("rate", 50, "flips per second in the steady phase")
	writers := flag.Int("writers", 8, "concurrent status writers in the burst phase")
	host := flag.Bool("host", true, "also roll the pods through NotReady under load through envoyhost running inflow.so (make build-host build-filter)")
	clients := flag.Int("clients", 8, "concurrent clients in the host phase")
	unavailable := flag.Int("unavailable", 20, "pods NotReady at a time in the host phase")
	hostRate := flag.Float64("host-rate", 25, "status writes per second in the host phase")
	bin := flag.String("bin", "build/out/inflow-controlplane", "the control-plane binary")
	out := flag.String("out", "", "markdown file whose bench-kube section gets the table (default: stdout only)")
	flag.Parse()
	hp := hostPhase{on: *host, clients: *clients, unavailable: *unavailable, interval: time.Duration(float64(time.Second) / *hostRate)}
	if err := run(*pods, *rate, *writers, *bin, *out, hp); err != nil {
		fmt.Fprintln(os.Stderr, "benchkube:", err)
		os.Exit(1)
	}
}

// hostPhase configures the churn through the host.
type hostPhase struct {
	on                   bool
	clients, unavailable int
	interval             time.Duration
}

func run(nPods int, rate float64, writers int, bin, out string, hp hostPhase) error {
	loadBefore := loadAverage()
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := kubetest.FindRoot(cwd)
	if err != nil {
		return err
	}
	assets, err := kubetest.FindAssets(root)
	if err != nil {
		return err
	}
	cluster, err := kubetest.StartCluster(root, assets)
	if err != nil {
		return err
	}
	defer cluster.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	kc := kubernetes.NewForConfigOrDie(cluster.Config)
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	if err := createPool(ctx, cluster, port); err != nil {
		return err
	}
	ips := make([]string, nPods)
	for i := range ips {
		ips[i] = fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250)
	}
	if err := parallel(writers, ips, func(i int, ip string) error { return createPod(ctx, kc, podName(i), ip) }); err != nil {
		return err
	}

	cp, err := startControlPlane(ctx, root, bin, cluster.KubeConfig())
	if err != nil {
		return err
	}
	defer cp.stop()
	obs, err := observe(cp.xds)
	if err != nil {
		return err
	}
	defer obs.close()
	all := make([]string, nPods)
	for i, ip := range ips {
		all[i] = net.JoinHostPort(ip, strconv.Itoa(port))
	}
	if err := obs.waitFor(all, 60*time.Second); err != nil {
		return fmt.Errorf("initial endpoints: %w", err)
	}

	var rows []row
	before := obs.listeners()
	idle, err := cp.usage(func() error { time.Sleep(5 * time.Second); return nil })
	if err != nil {
		return err
	}
	rows = append(rows, row{phase: "idle, 5 s", use: idle})
	interval := time.Duration(float64(time.Second) / rate)
	for _, ph := range []struct {
		name string
		flip func(ready bool) ([]time.Duration, error)
	}{
		{fmt.Sprintf("steady: %d flips/s, one writer", int(rate)), func(ready bool) ([]time.Duration, error) {
			return flipAll(ctx, kc, obs, ips, port, ready, 1, interval)
		}},
		{fmt.Sprintf("burst: %d writers, no pause", writers), func(ready bool) ([]time.Duration, error) {
			return flipAll(ctx, kc, obs, ips, port, ready, writers, 0)
		}},
	} {
		for _, ready := range []bool{false, true} {
			var lat []time.Duration
			use, err := cp.usage(func() error {
				var err error
				lat, err = ph.flip(ready)
				return err
			})
			if err != nil {
				return err
			}
			what := "NotReady"
			if ready {
				what = "Ready"
			}
			rows = append(rows, row{phase: ph.name + ", " + what, lat: lat, use: use})
		}
	}
	version, err := kc.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	table := render(nPods, version.GitVersion, rows, cp.memory, obs.listeners()-before)
	if hp.on {
		var res *hostResult
		use, err := cp.usage(func() (err error) {
			res, err = runHostPhase(ctx, kc, obs, cp.xds, ips, port, hp)
			return err
		})
		if err != nil {
			return err
		}
		res.controlPlane = use
		res.rss, res.peak = cp.memory()
		table += renderHost(nPods, res)
		if err := res.check(); err != nil {
			fmt.Print(table)
			return err
		}
	}
	table += fmt.Sprintf("\nMachine: %d CPUs, shared; load average (1 min) %s before the run, %s after.\n", runtime.NumCPU(), loadBefore, loadAverage())
	fmt.Print(table)
	if out != "" {
		return replaceSection(filepath.Join(root, out), table)
	}
	return nil
}

func podName(i int) string { return fmt.Sprintf("vllm-%03d", i) }

var routes = schema.GroupVersionResource{Group: "aigateway.envoyproxy.io", Version: "v1beta1", Resource: "aigatewayroutes"}

func createPool(ctx context.Context, c *kubetest.Cluster, port int) error {
	p := &giev1.InferencePool{ObjectMeta: metav1.ObjectMeta{Name: "gemma2", Namespace: ns}}
	p.Spec.Selector.MatchLabels = map[giev1.LabelKey]giev1.LabelValue{"app": "gemma2"}
	p.Spec.TargetPorts = []giev1.Port{{Number: giev1.PortNumber(port)}}
	eppPort := giev1.Port{Number: 9002}
	p.Spec.EndpointPickerRef = giev1.EndpointPickerRef{Name: "gemma2-epp", Port: &eppPort}
	if _, err := gieclient.NewForConfigOrDie(c.Config).InferenceV1().InferencePools(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		return err
	}
	route := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": routes.GroupVersion().String(), "kind": "AIGatewayRoute",
		"metadata": map[string]any{"name": "llm", "namespace": ns},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"name": "ai-gateway"}},
			"rules": []any{map[string]any{
				"matches":     []any{map[string]any{"headers": []any{map[string]any{"type": "Exact", "name": "x-ai-eg-model", "value": model}}}},
				"backendRefs": []any{map[string]any{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "gemma2"}},
			}},
		},
	}}
	_, err := dynamic.NewForConfigOrDie(c.Config).Resource(routes).Namespace(ns).Create(ctx, route, metav1.CreateOptions{})
	return err
}

func createPod(ctx context.Context, kc kubernetes.Interface, name, ip string) error {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "gemma2"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "vllm", Image: "vllm/vllm-openai"}}},
	}
	p, err := kc.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, Conditions: []corev1.PodCondition{ready(true)}}
	_, err = kc.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

func ready(r bool) corev1.PodCondition {
	s := corev1.ConditionFalse
	if r {
		s = corev1.ConditionTrue
	}
	return corev1.PodCondition{Type: corev1.PodReady, Status: s, LastTransitionTime: metav1.Now()}
}

// flipAll sets every pod's readiness, in a shuffled order, from writers
// goroutines pausing interval between writes; each flip's latency runs
// from just before its status write to the first served snapshot that
// reflects it.
func flipAll(ctx context.Context, kc kubernetes.Interface, obs *observer, ips []string, port int, r bool, writers int, interval time.Duration) ([]time.Duration, error) {
	order := make([]int, len(ips))
	for i := range order {
		order[i] = (i*7919 + 13) % len(ips) // a fixed permutation (7919 is prime)
	}
	done := make(chan time.Duration, len(ips))
	err := parallel(writers, order, func(_ int, i int) error {
		obs.expect(net.JoinHostPort(ips[i], strconv.Itoa(port)), r, done)
		if err := setReady(ctx, kc, podName(i), r); err != nil {
			return err
		}
		time.Sleep(interval)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var lat []time.Duration
	timeout := time.After(60 * time.Second)
	for range ips {
		select {
		case d := <-done:
			lat = append(lat, d)
		case <-timeout:
			return nil, fmt.Errorf("%d of %d flips never reached xDS", len(ips)-len(lat), len(ips))
		}
	}
	return lat, nil
}

// loadAverage is the 1-minute load average ("?" if unreadable).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// setReady writes a pod's Ready condition as its kubelet would.
func setReady(ctx context.Context, kc kubernetes.Interface, name string, r bool) error {
	p, err := kc.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	p.Status.Conditions = []corev1.PodCondition{ready(r)}
	_, err = kc.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

// parallel runs f over items with n goroutines, returning the first error.
func parallel[T any](n int, items []T, f func(int, T) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := 0
	for range n {
		wg.Go(func() {
			for {
				mu.Lock()
				if next >= len(items) || first != nil {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := f(i, items[i]); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// controlPlane is the binary running against the test cluster.
type controlPlane struct {
	cmd *exec.Cmd
	xds string
}

func startControlPlane(ctx context.Context, root, bin string, kubeconfig []byte) (*controlPlane, error) {
	dir, err := os.MkdirTemp("", "benchkube")
	if err != nil {
		return nil, err
	}
	kc := filepath.Join(dir, "kubeconfig")
	cfg := filepath.Join(dir, "controlplane.yaml")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfg, []byte("listeners: [{name: public, address: 127.0.0.1, port: 10000}]\n"+
		"kubernetes: {namespaces: ["+ns+"], scheduler: {scrape_interval: "+scrapeInterval+", staleness: 1s}}\n"), 0o600); err != nil {
		return nil, err
	}
	xdsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(root, bin)
	}
	cp := &controlPlane{xds: fmt.Sprintf("127.0.0.1:%d", xdsPort)}
	cp.cmd = exec.CommandContext(ctx, bin, "--config", cfg, "--kubeconfig", kc, "--log-level", "warn",
		"--xds-address", cp.xds, "--admin-address", fmt.Sprintf("127.0.0.1:%d", adminPort))
	cp.cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ns, "POD_NAME=bench")
	cp.cmd.Stderr = os.Stderr
	if err := cp.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (make build-controlplane): %w", bin, err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", cp.xds)
		if err == nil {
			c.Close()
			return cp, nil
		}
		if time.Now().After(deadline) {
			cp.stop()
			return nil, fmt.Errorf("the control plane never listened on %s: %w", cp.xds, err)
		}
	}
}

func (cp *controlPlane) stop() {
	_ = cp.cmd.Process.Signal(os.Interrupt)
	_ = cp.cmd.Wait()
}

// usage is the control plane's CPU time spent while f runs, and f's wall time.
type usage struct{ cpu, wall time.Duration }

func (u usage) String() string {
	return fmt.Sprintf("%.2f s in %.1f s (%.0f %% of a core)", u.cpu.Seconds(), u.wall.Seconds(), 100*u.cpu.Seconds()/u.wall.Seconds())
}

func (cp *controlPlane) usage(f func() error) (usage, error) {
	c0, err := cpuTime(cp.cmd.Process.Pid)
	if err != nil {
		return usage{}, err
	}
	start := time.Now()
	if err := f(); err != nil {
		return usage{}, err
	}
	wall := time.Since(start)
	c1, err := cpuTime(cp.cmd.Process.Pid)
	return usage{cpu: c1 - c0, wall: wall}, err
}

// cpuTime is utime+stime of pid from /proc (clock ticks of 10 ms).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// memory is the control plane's resident set now and at its peak.
func (cp *controlPlane) memory() (rss, peak string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cp.cmd.Process.Pid))
	if err != nil {
		return "?", "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rss = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			peak = strings.TrimSpace(v)
		}
	}
	return rss, peak
}

type row struct {
	phase string
	lat   []time.Duration
	use   usage
}

func pct(lat []time.Duration, p float64) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}
