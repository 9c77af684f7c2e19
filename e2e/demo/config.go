// Package demo runs the compose demo's stack on one machine without Docker:
// the vLLM simulators, the control plane (in process, from the same config
// file the compose demo mounts) and the real inflow.so in the envoyhost ABI
// test host; plus the smoke checks that prove the stack routes.
package demo

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/e2e/harness"
)

// ConfigPath is the compose demo's control-plane config, relative to the
// repository root.
const ConfigPath = "e2e/demo/controlplane.yaml"

// DefaultConfig returns the absolute path of ConfigPath.
func DefaultConfig() (string, error) {
	root, err := harness.Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ConfigPath), nil
}

// Config is the demo's control-plane config as read, plus what the stand-in
// needs to know about it.
type Config struct {
	Raw  []byte
	Spec *spec.Config
	// Pool is the one pool of self-hosted servers; every endpoint of it is
	// one simulator.
	Pool string
	// Endpoints are the pool's endpoints as the compose network has them.
	Endpoints []string
	// Base is the base model the servers load (vLLM --model) and Adapters
	// are their LoRA adapters (--lora-modules), both derived from the
	// models: a model without rewrite names the base, rewrite targets are
	// adapters.
	Base     string
	Adapters []string
	// Listener is the name of the listener whose filter config the host
	// loads.
	Listener string
}

// LoadConfig reads and validates the config at path, and derives what the
// servers must serve. The demo has one listener and one pool by design;
// anything else is an error rather than a silent pick.
func LoadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := spec.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(s.Listeners) != 1 || len(s.Pools) != 1 {
		return nil, fmt.Errorf("%s: the demo needs exactly one listener and one pool, got %d and %d",
			path, len(s.Listeners), len(s.Pools))
	}
	c := &Config{Raw: raw, Spec: s, Pool: s.Pools[0].Name, Endpoints: s.Pools[0].Endpoints, Listener: s.Listeners[0].Name}
	for _, m := range s.Models {
		if m.Pool != c.Pool {
			continue
		}
		if len(m.Rewrite) == 0 {
			if c.Base != "" && c.Base != m.Name {
				return nil, fmt.Errorf("%s: two base models (%s, %s); a simulator loads one", path, c.Base, m.Name)
			}
			c.Base = m.Name
			continue
		}
		for _, t := range m.Rewrite {
			if t.Model != c.Base && !slices.Contains(c.Adapters, t.Model) {
				c.Adapters = append(c.Adapters, t.Model)
			}
		}
	}
	if c.Base == "" || len(c.Endpoints) == 0 {
		return nil, fmt.Errorf("%s: the demo pool needs a base model and endpoints", path)
	}
	// A rewrite to the base name is not an adapter (Base may be found after it).
	c.Adapters = slices.DeleteFunc(c.Adapters, func(a string) bool { return a == c.Base })
	return c, nil
}

// Rewritten returns the config text with every pool endpoint replaced by
// the address at the same index of addrs (the loopback simulators), parsed
// again so a replacement that missed or hit anything else is an error.
func (c *Config) Rewritten(addrs []string) ([]byte, error) {
	if len(addrs) != len(c.Endpoints) {
		return nil, fmt.Errorf("%d simulators for %d endpoints", len(addrs), len(c.Endpoints))
	}
	out := c.Raw
	for i, ep := range c.Endpoints {
		// Endpoints are ip:port literals; each appears once in the file.
		if n := bytes.Count(out, []byte(ep)); n != 1 {
			return nil, fmt.Errorf("endpoint %s appears %d times in the config text, want once", ep, n)
		}
		out = bytes.Replace(out, []byte(ep), []byte(addrs[i]), 1)
	}
	s, err := spec.Parse(out)
	if err != nil {
		return nil, fmt.Errorf("rewritten config: %w", err)
	}
	if got := s.Pools[0].Endpoints; !slices.Equal(got, addrs) {
		return nil, fmt.Errorf("rewritten endpoints %v, want %v", got, addrs)
	}
	return out, nil
}

// RewriteEdit maps an edited config text the way Rewritten mapped the
// original: each of the original pool endpoints (compose addresses) becomes
// its simulator's address, wherever it appears. Endpoints the edit added
// stay as written (they reach nothing here); whether the edit is valid is
// the control plane's to say, as it is in the compose demo.
func (c *Config) RewriteEdit(raw []byte, addrs []string) []byte {
	out := raw
	for i, ep := range c.Endpoints {
		if i < len(addrs) {
			out = bytes.ReplaceAll(out, []byte(ep), []byte(addrs[i]))
		}
	}
	return out
}
