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

// The control plane reads no key: a backend names Envoy's secret file,
// and the old forms that made it read keys are refused with the way out,
// without the file or variable being read.
func TestLoadReadsNoKeys(t *testing.T) {
	dir := t.TempDir()
	const secret = "sk-secret-value-987"
	write(t, filepath.Join(dir, "key"), secret)
	t.Setenv("INFLOW_TEST_KEY", secret)
	path := filepath.Join(dir, "c.yaml")

	write(t, path, configWithKey("{secret_file: /etc/inflow/secrets/b.yaml}"))
	l, err := configfile.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if k := l.Config.Backends[0].APIKey; k.SecretFile != "/etc/inflow/secrets/b.yaml" || l.Config.Backends[0].EffectiveSecretName() != "b" {
		t.Errorf("api_key %+v", k)
	}
	for _, old := range []string{"{file: key}", "{env: INFLOW_TEST_KEY}"} {
		write(t, path, configWithKey(old))
		_, err := configfile.Load(path)
		if !errors.Is(err, spec.ErrInvalid) || !strings.Contains(err.Error(), "api_key.secret_file") {
			t.Errorf("%s: %v, want the migration message", old, err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error holds the key", old)
		}
	}
}

func TestLoadDigestFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	write(t, path, configWithKey("{secret_file: /s/a.yaml}"))
	a, err := configfile.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, configWithKey("{secret_file: /s/b.yaml}"))
	b, err := configfile.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest == b.Digest {
		t.Error("an edit did not change the digest, so it would never be pushed")
	}
}

func TestLoadRejectsInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	write(t, path, "listeners: []\nmodels: []\n")
	if _, err := configfile.Load(path); !errors.Is(err, spec.ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
}

func TestWatcherSeesEditsRenamesAndEveryFollowedFile(t *testing.T) {
	dir := t.TempDir()
	cfg, other := filepath.Join(dir, "c.yaml"), filepath.Join(dir, "other")
	write(t, cfg, "a")
	write(t, other, "k")
	w, err := configfile.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Follow(cfg, other); err != nil {
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
		{"second followed file", func() { write(t, other, "k2") }},
	}
	for _, s := range steps {
		before := calls.Load()
		s.do()
		poll.Eventually(t, s.name, func() bool { return calls.Load() > before })
	}
}
