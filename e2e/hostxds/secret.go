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

// mounts maps directories of the Envoy container to this machine's, as
// the container's volumes do: paths in the config name files inside the
// image (an SDS file, a CA bundle); envoyhost reads them here.
type mounts map[string]string

func (m mounts) local(p string) string {
	for dir, here := range m {
		if p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/") {
			return filepath.Join(here, strings.TrimPrefix(p, dir))
		}
	}
	return p
}

// readSDS reads a file-based SDS source as Envoy's filesystem subscription
// and SdsApi do. The file must exist when the cluster is created: SdsApi's
// constructor creates the subscription (secret/sds_api.cc:33-38), whose
// factory checks the path (config/subscription_factory_impl.cc:58-61,
// config/utility.cc:61-70), and the error rejects the cluster: that is the
// only error. The file is a DiscoveryResponse (YAML or JSON, by
// extension) with exactly one Secret, of the configured name
// (sds_api.cc onConfigUpdate; anything else is a rejected update, so the
// secret stays absent); its generic_secret DataSource may name a file,
// read as is (not trimmed) and watched (sds_api.cc:116-140). watch lists
// what to watch for changes: the watched_directory or the file's
// directory, and the key file's directory.
func readSDS(m mounts, d clusterDeps) (value []byte, watch []string, err error) {
	path := m.local(d.secretPath)
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("paths must refer to an existing path in the system: '%s' does not exist", d.secretPath)
	}
	if d.watchDir != "" {
		watch = append(watch, m.local(d.watchDir))
	} else {
		watch = append(watch, filepath.Dir(path))
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, watch, nil
	}
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
		if raw, err = yaml.YAMLToJSON(raw); err != nil {
			return nil, watch, nil
		}
	}
	var resp discoveryv3.DiscoveryResponse
	if protojson.Unmarshal(raw, &resp) != nil || len(resp.GetResources()) != 1 || resp.GetResources()[0].GetTypeUrl() != secretTypeURL {
		return nil, watch, nil
	}
	var s tlsv3.Secret
	if resp.GetResources()[0].UnmarshalTo(&s) != nil || s.GetName() != d.secret {
		return nil, watch, nil
	}
	ds := s.GetGenericSecret().GetSecret()
	switch {
	case ds.GetFilename() != "":
		key := m.local(ds.GetFilename())
		watch = append(watch, filepath.Dir(key))
		v, err := os.ReadFile(key)
		if err != nil {
			return nil, watch, nil // recovered when the file appears
		}
		return v, watch, nil
	case ds.GetInlineString() != "":
		return []byte(ds.GetInlineString()), watch, nil
	case len(ds.GetInlineBytes()) > 0:
		return ds.GetInlineBytes(), watch, nil
	case ds.GetEnvironmentVariable() != "":
		return []byte(os.Getenv(ds.GetEnvironmentVariable())), watch, nil
	}
	return nil, watch, nil
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

// add watches dir; a directory that does not exist (yet) is not watched.
func (s *secretWatch) add(dir string) {
	if s.watched[dir] {
		return
	}
	if s.w.Add(dir) == nil {
		s.watched[dir] = true
	}
}

func (s *secretWatch) close() error { return s.w.Close() }
