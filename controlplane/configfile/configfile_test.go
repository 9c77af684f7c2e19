package configfile_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/inflow-gateway/inflow/controlplane/configfile"
	"github.com/inflow-gateway/inflow/controlplane/spec"
	"github.com/inflow-gateway/inflow/internal/poll"
)

const secret = "sk-secret-value-987"

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func configWithKey(ref string) string {
	return `
listeners: [{name: l, address: 127.0.0.1, port: 10000}]
models: [{name: g, backend: b}]
backends: [{name: b, base_url: "https://api.example.com/v1", api_key: ` + ref + `}]
`
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadResolvesKeys(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "key"), secret+"\n")
	tests := []struct {
		name, ref string
		env       map[string]string
		keyFiles  int
	}{
		{"relative file", "{file: key}", nil, 1},
		{"absolute file", "{file: " + filepath.Join(dir, "key") + "}", nil, 1},
		{"env", "{env: K}", map[string]string{"K": " " + secret + " "}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "c.yaml")
			write(t, path, configWithKey(tt.ref))
			l, err := configfile.Load(path, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if got := l.Config.Backends[0].APIKeyValue.Reveal(); got != secret {
				t.Errorf("key %q", got)
			}
			if len(l.KeyFiles) != tt.keyFiles {
				t.Errorf("key files %v", l.KeyFiles)
			}
		})
	}
}

func TestLoadErrorsNameTheSourceNotTheKey(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "two-lines"), secret+"\nsecond\n")
	write(t, filepath.Join(dir, "empty"), "\n")
	tests := []struct {
		name, ref string
		env       map[string]string
		want      string
	}{
		{"missing env", "{env: NOPE}", nil, "backends[0].api_key: api key: environment variable NOPE is not set"},
		{"missing file", "{file: absent}", nil, "absent"},
		{"empty file", "{file: empty}", nil, "is empty"},
		{"two lines", "{file: two-lines}", nil, "holds more than one line"},
		{"empty env", "{env: E}", map[string]string{"E": ""}, "environment variable E is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "c.yaml")
			write(t, path, configWithKey(tt.ref))
			_, err := configfile.Load(path, env(tt.env))
			if !errors.Is(err, configfile.ErrSecret) {
				t.Fatalf("want ErrSecret, got %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the key: %v", err)
			}
		})
	}
}

func TestLoadDigestCoversKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	write(t, path, configWithKey("{env: K}"))
	a, err := configfile.Load(path, env(map[string]string{"K": "one"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := configfile.Load(path, env(map[string]string{"K": "two"}))
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest == b.Digest {
		t.Error("a rotated key does not change the digest, so it would never be pushed")
	}
}

func TestLoadRejectsInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	write(t, path, "listeners: []\nmodels: []\n")
	if _, err := configfile.Load(path, env(nil)); !errors.Is(err, spec.ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
}

func TestWatcherSeesEditsRenamesAndKeyFiles(t *testing.T) {
	dir := t.TempDir()
	cfg, key := filepath.Join(dir, "c.yaml"), filepath.Join(dir, "key")
	write(t, cfg, "a")
	write(t, key, "k")
	w, err := configfile.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Follow(cfg, key); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func() { calls.Add(1) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	steps := []struct {
		name string
		do   func()
	}{
		{"in-place write", func() { write(t, cfg, "b") }},
		{"rename over", func() {
			tmp := filepath.Join(dir, ".c.yaml.tmp")
			write(t, tmp, "c")
			if err := os.Rename(tmp, cfg); err != nil {
				t.Fatal(err)
			}
		}},
		{"key file", func() { write(t, key, "k2") }},
	}
	for _, s := range steps {
		before := calls.Load()
		s.do()
		poll.Eventually(t, s.name, func() bool { return calls.Load() > before })
	}
}
