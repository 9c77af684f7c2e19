// Package configfile is the file source of the control plane: it reads the
// YAML config and watches the file so edits are picked up. Kubernetes will
// be a second source producing the same spec.Config.
package configfile

import (
	"crypto/sha256"
	"fmt"
	"os"

	"github.com/inflow-gateway/inflow/controlplane/spec"
)

// Loaded is one successful read: the config and a digest of its bytes, so
// an unchanged reload can be skipped.
type Loaded struct {
	Config *spec.Config
	Digest [sha256.Size]byte
}

// Load reads and validates the config at path. It reads nothing else: API
// keys stay in Envoy's own secret files (spec.APIKey).
func Load(path string) (*Loaded, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := spec.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Loaded{Config: c, Digest: sha256.Sum256(data)}, nil
}
