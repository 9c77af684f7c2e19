package main

import (
	"log"
	"net"
	"strconv"

	"github.com/inflow-gateway/inflow/controlplane/kube/kubetest"
	"github.com/inflow-gateway/inflow/e2e/harness"
)

// gieEPP starts a kube-apiserver holding an InferencePool whose one pod
// is the backend, the Inference Extension's EPP for it, and a host whose
// ext_proc client uses the EPP. The API server's CPU is not counted: it
// serves the EPP's watches, not requests.
func (s *stack) gieEPP(name string) setup {
	kube, err := startKube()
	if err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	s.closers = append(s.closers, func() { _ = kube.Stop() })
	host, port, err := net.SplitHostPort(s.backend.Addr)
	if err != nil {
		log.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	pool := harness.PoolPods{Namespace: "bench", Name: "llama", Port: p, IPs: []string{host}}
	if err := harness.CreatePool(s.ctx, kube.Config, pool); err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	epp, err := harness.StartGIEEPP(s.ctx, s.subdir("gie-epp"), kube.KubeConfig(), pool)
	if err != nil {
		log.Fatalf("%s: %v", name, err)
	}
	s.closers = append(s.closers, epp.Close)
	return s.host(name, harness.ExtProcHost(epp.Target, harness.FullDuplex), epp.Process)
}

// startKube starts the kube-apiserver and etcd of make kube-assets.
func startKube() (*kubetest.Cluster, error) {
	root, err := harness.Root()
	if err != nil {
		return nil, err
	}
	assets, err := kubetest.FindAssets(root)
	if err != nil {
		return nil, err
	}
	return kubetest.StartCluster(root, assets)
}
