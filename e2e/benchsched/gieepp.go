package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/e2e/harness"
	"github.com/inflow-gateway/inflow/e2e/vllmsim/sim"
	"github.com/inflow-gateway/inflow/filter/pool"
	"github.com/inflow-gateway/inflow/internal/poll"
)

// startSims starts n simulators, each on its own loopback address and all
// on one port: the layout of a pool's pods (podIP:targetPort), which the
// EPP needs and every other policy is indifferent to.
func startSims(ctx context.Context, n int, opts sim.Options) (*sim.Cluster, error) {
	ips := harness.LoopbackIPs(n)
	port, err := harness.FreeCommonPort(ips)
	if err != nil {
		return nil, err
	}
	all := make([]sim.Options, n)
	for i, ip := range ips {
		all[i] = opts
		all[i].LoRAs = append([]string(nil), opts.LoRAs...)
		all[i].Listen = net.JoinHostPort(ip, strconv.Itoa(port))
	}
	return sim.StartEach(ctx, all)
}

// gieEPP is the Gateway API Inference Extension's Endpoint Picker with its
// default profile (queue, KV-cache and prefix-cache scorers), reading the
// simulators as the pods of an InferencePool on a real kube-apiserver and
// scraping them itself; requests reach it through the host's ext_proc
// client, in its mode (full-duplex streamed bodies).
type gieEPP struct {
	kube *kubetest.Cluster
	epp  *harness.GIEEPP
	dir  string
	n    int
}

func newGIEEPP(ctx context.Context, addrs []string) (*gieEPP, error) {
	dir, err := os.MkdirTemp("", "benchsched-epp-")
	if err != nil {
		return nil, err
	}
	p := &gieEPP{dir: dir, n: len(addrs)}
	pods := harness.PoolPods{Namespace: "bench", Name: "sim"}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, err
		}
		pods.IPs = append(pods.IPs, host)
		pods.Port, _ = strconv.Atoi(port)
	}
	root, err := harness.Root()
	if err != nil {
		p.close()
		return nil, err
	}
	assets, err := kubetest.FindAssets(root)
	if err != nil {
		p.close()
		return nil, err
	}
	if p.kube, err = kubetest.StartCluster(root, assets); err != nil {
		p.close()
		return nil, err
	}
	if err := harness.CreatePool(ctx, p.kube.Config, pods); err != nil {
		p.close()
		return nil, err
	}
	if p.epp, err = harness.StartGIEEPP(ctx, dir, p.kube.KubeConfig(), pods); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *gieEPP) name() string { return "GIE EPP " + eppVersion() + " (default profile)" }

// pick is never called: the EPP picks in its own process.
func (p *gieEPP) pick(string, []byte) (*pool.Endpoint, error) {
	return nil, errors.New("the EPP picks in its own process, through the host")
}

func (p *gieEPP) close() {
	if p.epp != nil {
		p.epp.Close()
	}
	if p.kube != nil {
		_ = p.kube.Stop()
	}
	_ = os.RemoveAll(p.dir)
}

// route starts the host with the ext_proc client to the EPP, once the EPP
// counts every pod ready and has scraped them.
func (p *gieEPP) route(ctx context.Context) (*route, error) {
	if err := p.waitReady(ctx); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "benchsched-")
	if err != nil {
		return nil, err
	}
	r := &route{dir: dir}
	opts := harness.ExtProcHost(p.epp.Target, harness.FullDuplex)
	opts.Concurrency = 2
	if r.host, err = harness.StartHost(ctx, dir, opts); err != nil {
		r.close()
		return nil, fmt.Errorf("start host (run make build-host build-testfilters): %w", err)
	}
	return r, nil
}

// waitReady polls the EPP's own metrics until its pool gauge counts every
// pod (it publishes them every 5 s), then allows a few scrape intervals.
func (p *gieEPP) waitReady(ctx context.Context) error {
	err := poll.Until(ctx, 30*time.Second, "the EPP counting every pod ready", func() bool {
		return readyPods(ctx, p.epp.Metrics) >= p.n
	})
	time.Sleep(200 * time.Millisecond) // four 50 ms scrapes of each pod
	return err
}

// readyPods reads inference_pool_ready_pods from the EPP's /metrics.
func readyPods(ctx context.Context, addr string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "inference_pool_ready_pods") {
			f := strings.Fields(line)
			n, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return int(n)
		}
	}
	return 0
}

// picksInHost: the request goes to the host, which picks (inflow.so) or
// asks its picker (the EPP); the baselines pick here and steer the host.
func picksInHost(p policy) bool {
	switch p.(type) {
	case *inflow, *gieEPP:
		return true
	}
	return false
}

// eppVersion is the built EPP's version (its bin/epp/<version> folder).
func eppVersion() string {
	bin, err := harness.GIEEPPBinary()
	if err != nil {
		return "?"
	}
	parts := strings.Split(bin, string(os.PathSeparator))
	if len(parts) < 2 {
		return "?"
	}
	return parts[len(parts)-2]
}

// loadAtStart is the 1-minute load average when the benchmark started:
// the machine is shared, and the numbers only mean something beside it.
var loadAtStart = loadavg()

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// eppComparison is the line the EPP policy is there for: Inflow's TTFT
// p90 over the EPP's (goal: at most 0.8), and the machine's load.
func eppComparison(rs []result) string {
	var in, epp *result
	for i := range rs {
		switch {
		case strings.HasPrefix(rs[i].policy, "inflow (default"):
			in = &rs[i]
		case strings.HasPrefix(rs[i].policy, "GIE EPP"):
			epp = &rs[i]
		}
	}
	line := fmt.Sprintf("\nLoad average %s at the start, %s at the end.\n", loadAtStart, loadavg())
	if in != nil && epp != nil && pct(epp.ttft, 0.9) > 0 {
		line += fmt.Sprintf("\n**Inflow's TTFT p90 / the GIE EPP's: %.2f** (goal ≤ 0.80).\n",
			float64(pct(in.ttft, 0.9))/float64(pct(epp.ttft, 0.9)))
	}
	return line
}
