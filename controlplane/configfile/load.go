// Package configfile is the file source of the control plane: it reads the
// YAML config, resolves the API keys it refers to, and watches the file so
// edits are picked up. Kubernetes will be a second source producing the same
// spec.Config.
package configfile

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/inflow-gateway/inflow/controlplane/spec"
)

// ErrSecret marks an API key that could not be read. Its messages name the
// file or variable, never the value.
var ErrSecret = errors.New("api key")

// Loaded is one successful read: the config with its keys resolved, and a
// digest of every input byte (config and keys) so an unchanged reload can be
// skipped.
type Loaded struct {
	Config *spec.Config
	Digest [sha256.Size]byte
	// KeyFiles are the absolute paths of API key files it read; the
	// watcher follows them too so a rotated key is pushed.
	KeyFiles []string
}

// Load reads and validates the config at path and resolves its API keys:
// files relative to the config's directory, variables through getenv.
func Load(path string, getenv func(string) (string, bool)) (*Loaded, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := spec.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	h := sha256.New()
	h.Write(data)
	out := &Loaded{Config: c}
	dir := filepath.Dir(path)
	var errs []error
	for i := range c.Backends {
		b := &c.Backends[i]
		if b.APIKey == nil {
			continue
		}
		field := fmt.Sprintf("backends[%d].api_key", i)
		key, file, err := resolve(*b.APIKey, dir, getenv)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			continue
		}
		if file != "" {
			out.KeyFiles = append(out.KeyFiles, file)
		}
		b.APIKeyValue = key
		h.Write([]byte{0})
		h.Write([]byte(key))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	h.Sum(out.Digest[:0])
	return out, nil
}

func resolve(ref spec.SecretRef, dir string, getenv func(string) (string, bool)) (key spec.Secret, file string, err error) {
	var raw string
	if ref.Env != "" {
		v, ok := getenv(ref.Env)
		if !ok {
			return "", "", fmt.Errorf("%w: environment variable %s is not set", ErrSecret, ref.Env)
		}
		raw = v
	} else {
		file = ref.File
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			// The path error names the file, not its content.
			return "", "", fmt.Errorf("%w: %w", ErrSecret, err)
		}
		raw = string(b)
	}
	// Key files usually end in a newline; a key never contains one.
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", "", fmt.Errorf("%w: %s is empty", ErrSecret, source(ref, file))
	}
	if strings.ContainsAny(raw, "\r\n\x00") {
		return "", "", fmt.Errorf("%w: %s holds more than one line", ErrSecret, source(ref, file))
	}
	return spec.Secret(raw), file, nil
}

func source(ref spec.SecretRef, file string) string {
	if ref.Env != "" {
		return "environment variable " + ref.Env
	}
	return "file " + file
}
