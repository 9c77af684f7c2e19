package spec

import (
	"errors"
	"fmt"

	"sigs.k8s.io/yaml"
)

// ErrInvalid marks a configuration the control plane refuses.
var ErrInvalid = errors.New("invalid control-plane config")

// Parse decodes YAML (or JSON) strictly: unknown fields and duplicate keys
// are errors naming the field. The result is validated but its API keys are
// not resolved.
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}
