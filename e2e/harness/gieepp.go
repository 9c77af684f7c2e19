package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	giev1 "sigs.k8s.io/gateway-api-inference-extension/api/v1"
)

// GIEEPPEnv names the EPP binary (make sets it to bin/epp/<version>/epp);
// RequireEPPEnv=1 (make test) turns a missing binary into a failure.
const (
	GIEEPPEnv     = "INFLOW_GIE_EPP"
	RequireEPPEnv = "INFLOW_REQUIRE_EPP"
)

// GIEEPPBinary is the Inference Extension's EPP built by make gie-epp, or
// an error saying how to get it.
func GIEEPPBinary() (string, error) {
	path := os.Getenv(GIEEPPEnv)
	if path == "" {
		root, err := Root()
		if err != nil {
			return "", err
		}
		matches, _ := filepath.Glob(filepath.Join(root, "bin", "epp", "*", "epp"))
		if len(matches) != 1 {
			return "", errors.New("the Inference Extension's EPP is not built: run `make gie-epp` (about 4 minutes cold)")
		}
		path = matches[0]
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("the Inference Extension's EPP: %w (run `make gie-epp`)", err)
	}
	return path, nil
}

// PoolPods is an InferencePool and its model-server pods as the EPP sees
// them: each pod's status.podIP is a loopback address where a server
// listens on Port.
type PoolPods struct {
	Namespace, Name string
	Port            int
	IPs             []string // one pod per address, e.g. 127.0.0.2..
}

// CreatePool creates the pool's Namespace, InferencePool and ready Pods on
// the API server at cfg. No kubelet runs: the pods' IPs and readiness are
// written through the status subresource, as the EPP's tests do.
func CreatePool(ctx context.Context, cfg *rest.Config, p PoolPods) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.Namespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	scheme := runtime.NewScheme()
	if err := giev1.Install(scheme); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	labels := map[string]string{"app": p.Name}
	pool := &giev1.InferencePool{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name},
		Spec: giev1.InferencePoolSpec{
			Selector:    giev1.LabelSelector{MatchLabels: map[giev1.LabelKey]giev1.LabelValue{"app": giev1.LabelValue(p.Name)}},
			TargetPorts: []giev1.Port{{Number: giev1.PortNumber(p.Port)}},
			EndpointPickerRef: giev1.EndpointPickerRef{
				Name: giev1.ObjectName(p.Name + "-epp"), Port: &giev1.Port{Number: 9002},
			},
		},
	}
	if err := c.Create(ctx, pool); err != nil {
		return fmt.Errorf("create InferencePool: %w", err)
	}
	for i, ip := range p.IPs {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: fmt.Sprintf("%s-%d", p.Name, i), Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "vllm", Image: "vllm/vllm-openai"}}},
		}
		created, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create pod: %w", err)
		}
		created.Status = corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		}
		if _, err := cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("pod status: %w", err)
		}
	}
	return nil
}

// GIEEPP is a running Endpoint Picker of the Inference Extension.
type GIEEPP struct {
	*Process
	Target  string // ip:port of its ext_proc service (plain text)
	Metrics string // ip:port of its Prometheus metrics
}

// StartGIEEPP runs the EPP for pool with the API server's kubeconfig, in
// plain text (the host's client has no TLS), with its default scheduling
// profile, metrics refresh (50 ms) and the Helm chart's log verbosity (1).
// It returns once the EPP's gRPC port accepts connections and it has read
// the pool (its readiness needs both).
func StartGIEEPP(ctx context.Context, dir string, kubeconfig []byte, pool PoolPods) (*GIEEPP, error) {
	bin, err := GIEEPPBinary()
	if err != nil {
		return nil, err
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	g := &GIEEPP{Target: "127.0.0.1:" + strconv.Itoa(ports[0]), Metrics: "127.0.0.1:" + strconv.Itoa(ports[2])}
	cmd := exec.Command(bin,
		"--pool-name", pool.Name, "--pool-namespace", pool.Namespace,
		"--grpc-port", strconv.Itoa(ports[0]), "--grpc-health-port", strconv.Itoa(ports[1]),
		"--metrics-port", strconv.Itoa(ports[2]),
		"--secure-serving=false", "--metrics-endpoint-auth=false", "--tracing=false", "--enable-pprof=false",
		"--zap-devel=false", "--zap-encoder=json", "--v=1")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kc)
	// The EPP logs little at -v=1; readiness is its gRPC health port.
	g.Process, err = start(ctx, cmd, "GIE EPP", func(string) bool { return false }, func() bool {
		return healthServing(ctx, "127.0.0.1:"+strconv.Itoa(ports[1]))
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// freePorts reserves n loopback ports (released before they are used).
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreeCommonPort finds a port free on every address of ips (each server
// of a pool listens on the pool's one target port).
func FreeCommonPort(ips []string) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		ok := true
		for _, ip := range ips {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			_ = l.Close()
		}
		if ok {
			return port, nil
		}
	}
	return 0, errors.New("no port free on every address")
}

// LoopbackIPs are n distinct loopback addresses from 127.0.0.2 up: Linux
// routes all of 127.0.0.0/8 to lo.
func LoopbackIPs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "127.0.0." + strconv.Itoa(i+2)
	}
	return out
}

// healthServing asks a gRPC health service whether it serves.
func healthServing(ctx context.Context, addr string) bool {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
}
