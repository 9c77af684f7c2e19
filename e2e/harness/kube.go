package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Kube is a real kube-apiserver and etcd (controller-runtime's envtest)
// with the InferencePool CRD installed, for the EPP to read its pool from.
type Kube struct {
	Config *rest.Config
	env    *envtest.Environment
}

// RequireKubeEnv=1 (make test) turns missing kube-apiserver/etcd into a
// failure instead of a skip.
const RequireKubeEnv = "INFLOW_REQUIRE_KUBE"

// KubeAssets is the folder holding kube-apiserver and etcd: KUBEBUILDER_ASSETS,
// or what make kube-assets built under bin/k8s/.
func KubeAssets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		root, err := Root()
		if err != nil {
			return "", err
		}
		matches, _ := filepath.Glob(filepath.Join(root, "bin", "k8s", "*", "kube-apiserver"))
		if len(matches) == 0 {
			return "", errors.New("kube-apiserver not built: run `make kube-assets` (about 5 minutes cold)")
		}
		dir = filepath.Dir(matches[len(matches)-1])
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make kube-assets`", bin, dir)
		}
	}
	return dir, nil
}

// StartKube starts the API server; Stop it when done.
func StartKube() (*Kube, error) {
	assets, err := KubeAssets()
	if err != nil {
		return nil, err
	}
	crd, err := inferencePoolCRD()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets, CRDDirectoryPaths: []string{crd}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver: %w", err)
	}
	return &Kube{Config: cfg, env: env}, nil
}

// KubeConfig is an administrator's kubeconfig, for processes (the EPP).
func (k *Kube) KubeConfig() []byte { return k.env.KubeConfig }

// Stop ends kube-apiserver and etcd.
func (k *Kube) Stop() error { return k.env.Stop() }

// inferencePoolCRD is the InferencePool CRD file of the Inference
// Extension module go.mod pins, from the module cache.
func inferencePoolCRD() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api-inference-extension").Output()
	if err != nil {
		return "", fmt.Errorf("locate the Inference Extension module: %w", err)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "bases", "inference.networking.k8s.io_inferencepools.yaml")
	if _, err := os.Stat(path); err != nil {
		return "", err
	}
	return path, nil
}
