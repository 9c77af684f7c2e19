package hostxds

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/fsnotify/fsnotify"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

const secretTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// hostSecret is a generic secret's value for envoyhost's credential
// injector. It travels from this process to the host over loopback, never
// over xDS.
type hostSecret struct {
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

// readSecretFile reads a file-based SDS source as Envoy's filesystem
// subscription does: a DiscoveryResponse in YAML or JSON (by extension)
// holding Secret resources; name picks one generic_secret.
func readSecretFile(path, name string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
		if raw, err = yaml.YAMLToJSON(raw); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	var resp discoveryv3.DiscoveryResponse
	if err := protojson.Unmarshal(raw, &resp); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, a := range resp.GetResources() {
		if a.GetTypeUrl() != secretTypeURL {
			return nil, fmt.Errorf("%s: resource of type %s, want %s", path, a.GetTypeUrl(), secretTypeURL)
		}
		var s tlsv3.Secret
		if err := a.UnmarshalTo(&s); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if s.GetName() != name {
			continue
		}
		ds := s.GetGenericSecret().GetSecret()
		switch {
		case ds.GetInlineString() != "":
			return []byte(ds.GetInlineString()), nil
		case len(ds.GetInlineBytes()) > 0:
			return ds.GetInlineBytes(), nil
		case ds.GetFilename() != "":
			return os.ReadFile(ds.GetFilename())
		default:
			return nil, fmt.Errorf("%s: secret %s: %w: only generic_secret with an inline or file DataSource", path, name, ErrNotModelled)
		}
	}
	return nil, fmt.Errorf("%s: no secret named %s", path, name)
}

// secretWatch re-reads secret files when they change, as Envoy's
// path_config_source does (the file, or watched_directory for atomic
// Kubernetes-style swaps).
type secretWatch struct {
	w       *fsnotify.Watcher
	watched map[string]bool
}

func newSecretWatch() (*secretWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	return &secretWatch{w: w, watched: map[string]bool{}}, nil
}

func (s *secretWatch) add(d clusterDeps) error {
	dir := d.watchDir
	if dir == "" {
		dir = filepath.Dir(d.secretPath)
	}
	if s.watched[dir] {
		return nil
	}
	if err := s.w.Add(dir); err != nil {
		return err
	}
	s.watched[dir] = true
	return nil
}

func (s *secretWatch) close() error { return s.w.Close() }
