package xds

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// ErrTLS marks certificate files that cannot be used.
var ErrTLS = errors.New("xds tls")

// MTLSFiles are the PEM files of an xDS server that requires client
// certificates.
type MTLSFiles struct {
	// CertFile and KeyFile are the server's certificate (chain) and key.
	CertFile, KeyFile string
	// ClientCAFile holds the CA certificates client certificates must
	// chain to; only Envoys holding such a certificate get the config.
	ClientCAFile string
}

// Set reports whether any file is named; Check requires all or none.
func (f MTLSFiles) Set() bool { return f.CertFile != "" || f.KeyFile != "" || f.ClientCAFile != "" }

// Check accepts all three files or none.
func (f MTLSFiles) Check() error {
	if f.Set() && (f.CertFile == "" || f.KeyFile == "" || f.ClientCAFile == "") {
		return fmt.Errorf("%w: a certificate, its key and a client CA are needed together", ErrTLS)
	}
	return nil
}

// ServerConfig is a TLS config that requires and verifies client
// certificates. It loads the files now (so a mistake fails at start) and
// again for a new connection once their contents changed, so
// cert-manager or a Kubernetes Secret update rotates them without a
// restart; a rotation that fails to load keeps the last good files.
func (f MTLSFiles) ServerConfig(log *slog.Logger) (*tls.Config, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	r := &reloader{files: f, log: log}
	if _, err := r.current(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.current()
		},
	}, nil
}

// reloader caches the config built from the files' bytes.
type reloader struct {
	files MTLSFiles
	log   *slog.Logger

	mu   sync.Mutex
	raw  [][]byte
	conf *tls.Config
}

func (r *reloader) current() (*tls.Config, error) {
	raw, err := readAll(r.files.CertFile, r.files.KeyFile, r.files.ClientCAFile)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		return r.keep(err)
	}
	if r.conf != nil && sameBytes(raw, r.raw) {
		return r.conf, nil
	}
	cert, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return r.keep(fmt.Errorf("%w: %s / %s: %w", ErrTLS, r.files.CertFile, r.files.KeyFile, err))
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(raw[2]) {
		return r.keep(fmt.Errorf("%w: %s holds no PEM certificate", ErrTLS, r.files.ClientCAFile))
	}
	r.raw = raw
	r.conf = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    cas,
		// gRPC runs over HTTP/2.
		NextProtos: []string{"h2"},
	}
	return r.conf, nil
}

// keep serves the last good config through a failed rotation, or fails
// when there is none yet.
func (r *reloader) keep(err error) (*tls.Config, error) {
	if r.conf == nil {
		return nil, err
	}
	r.log.Warn("xds: cannot reload TLS files; keeping the last good ones", "err", err)
	return r.conf, nil
}

func readAll(paths ...string) ([][]byte, error) {
	out := make([][]byte, len(paths))
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTLS, err)
		}
		out[i] = b
	}
	return out, nil
}

func sameBytes(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
