package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Root is the repository root: two levels above this module.
func Root() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "build", "versions.env")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", errors.New("build/versions.env not found above " + wd)
		}
	}
}

// Versions is build/versions.env: the one place the shipped versions are
// written down.
type Versions struct {
	Envoy, Go, Inflow, LLMDSim string
	// Kubernetes and Etcd are the API server the Kubernetes tests run
	// against (build/kubeassets).
	Kubernetes, Etcd string
	// GIEEPP is the Inference Extension release whose EPP is built as
	// inflow-epp's peer (build/epp).
	GIEEPP string
	// EnvoyGateway is the real Envoy Gateway the Envoy Gateway mode is
	// built against and tested with (build/envoygateway).
	EnvoyGateway string
}

// EnvoyImage is the Envoy image the custom image is built on.
func (v Versions) EnvoyImage() string { return "envoyproxy/envoy:contrib-" + v.Envoy }

// InflowEnvoyImage is the custom image: the Inflow version and the Envoy
// version it is built on.
func (v Versions) InflowEnvoyImage() string {
	return "ghcr.io/inflow-gateway/inflow-envoy:" + v.Inflow + "-envoy-" + v.Envoy
}

// ControlPlaneImage is the control plane's image.
func (v Versions) ControlPlaneImage() string {
	return "ghcr.io/inflow-gateway/inflow-controlplane:" + v.Inflow
}

// SimImage is the compose demo's model server image.
func (v Versions) SimImage() string { return "ghcr.io/llm-d/llm-d-inference-sim:" + v.LLMDSim }

// ReadVersions parses build/versions.env (KEY=VALUE lines, # comments), as
// make's include reads it; every key must be present exactly once.
func ReadVersions(root string) (Versions, error) {
	data, err := os.ReadFile(filepath.Join(root, "build", "versions.env"))
	if err != nil {
		return Versions{}, err
	}
	kv := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || v == "" || strings.ContainsAny(v, " \t\"'$") {
			return Versions{}, fmt.Errorf("versions.env:%d: want KEY=VALUE, got %q", n, line)
		}
		if _, dup := kv[k]; dup {
			return Versions{}, fmt.Errorf("versions.env:%d: %s repeated", n, k)
		}
		kv[k] = v
	}
	v := Versions{Envoy: kv["ENVOY_VERSION"], Go: kv["GO_VERSION"], Inflow: kv["INFLOW_VERSION"], LLMDSim: kv["LLMD_SIM_VERSION"],
		Kubernetes: kv["KUBERNETES_VERSION"], Etcd: kv["ETCD_VERSION"], GIEEPP: kv["GIE_EPP_VERSION"], EnvoyGateway: kv["ENVOY_GATEWAY_VERSION"]}
	if v.Envoy == "" || v.Go == "" || v.Inflow == "" || v.LLMDSim == "" || v.Kubernetes == "" || v.Etcd == "" || v.GIEEPP == "" || v.EnvoyGateway == "" || len(kv) != 8 {
		return v, fmt.Errorf("versions.env: want exactly ENVOY_VERSION, GO_VERSION, INFLOW_VERSION, LLMD_SIM_VERSION, KUBERNETES_VERSION, ETCD_VERSION, GIE_EPP_VERSION, ENVOY_GATEWAY_VERSION; got %v", kv)
	}
	return v, nil
}
