package demo

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadConfigDerivesServers(t *testing.T) {
	path, err := DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Base != "llama-3.1-8b-instruct" || !slices.Equal(c.Adapters, []string{"support-lora-v2", "support-lora-v3"}) {
		t.Errorf("base %q adapters %v", c.Base, c.Adapters)
	}
	if len(c.Endpoints) != len(Servers) || c.Listener != "public" || c.AdapterModel() != "llama-3.1-8b-support" {
		t.Errorf("endpoints %v listener %q adapter model %q", c.Endpoints, c.Listener, c.AdapterModel())
	}
}

func TestRewritten(t *testing.T) {
	path, err := DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	out, err := c.Rewritten(addrs)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range c.Endpoints {
		if strings.Contains(string(out), ep) {
			t.Errorf("%s is still in the rewritten config", ep)
		}
	}
	if _, err := c.Rewritten(addrs[:2]); err == nil {
		t.Error("two addresses for three endpoints: no error")
	}
	// An endpoint that also appears elsewhere in the text cannot be
	// rewritten unambiguously.
	dup := *c
	dup.Raw = append(append([]byte(nil), c.Raw...), []byte("# "+c.Endpoints[0]+"\n")...)
	if _, err := dup.Rewritten(addrs); err == nil {
		t.Error("an endpoint mentioned twice: no error")
	}
}

func TestLoadConfigRejects(t *testing.T) {
	tests := map[string]string{
		"two pools": `
listeners: [{name: public, address: 0.0.0.0, port: 10000}]
models: [{name: m, pool: a}, {name: n, pool: b}]
pools: [{name: a, endpoints: [10.0.0.1:8000]}, {name: b, endpoints: [10.0.0.2:8000]}]
`,
		"no base model": `
listeners: [{name: public, address: 0.0.0.0, port: 10000}]
models: [{name: m, pool: a, rewrite: [{model: x}]}]
pools: [{name: a, endpoints: [10.0.0.1:8000]}]
`,
		"two base models": `
listeners: [{name: public, address: 0.0.0.0, port: 10000}]
models: [{name: m, pool: a}, {name: n, pool: a}]
pools: [{name: a, endpoints: [10.0.0.1:8000]}]
`,
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadConfig(path); err == nil {
				t.Error("accepted")
			}
		})
	}
}
