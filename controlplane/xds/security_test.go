package xds_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/inflow-gateway/inflow/controlplane/admin"
	"github.com/inflow-gateway/inflow/controlplane/configfile"
	"github.com/inflow-gateway/inflow/controlplane/translator"
	"github.com/inflow-gateway/inflow/controlplane/xds"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
)

// serveMTLS serves res requiring client certificates of pki's CA.
func serveMTLS(t *testing.T, files xds.MTLSFiles, res *translator.Resources) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := xds.New(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), &admin.Metrics{})
	if _, _, err := srv.Publish(ctx, res); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeMTLS(ctx, lis, files) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return lis.Addr().String()
}

func mtlsSetup(t *testing.T) (*xdstest.PKI, xds.MTLSFiles) {
	t.Helper()
	dir := t.TempDir()
	pki, err := xdstest.NewPKI(dir, "inflow-xds")
	if err != nil {
		t.Fatal(err)
	}
	server, err := pki.Issue("controlplane", "controlplane", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return pki, xds.MTLSFiles{CertFile: server.CertFile, KeyFile: server.KeyFile, ClientCAFile: pki.CAFile}
}

// With mTLS on, only an Envoy holding a certificate of the client CA gets
// anything; without one (or with another CA's, or in plain text) the
// connection is refused before any xDS is exchanged.
func TestMTLSRefusesClientsWithoutACertificate(t *testing.T) {
	pki, files := mtlsSetup(t)
	addr := serveMTLS(t, files, resources(t, "10.0.0.1:8000"))
	envoy, err := pki.Issue("inflow-envoy")
	if err != nil {
		t.Fatal(err)
	}
	other, err := xdstest.NewPKI(t.TempDir(), "someone-else")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.Issue("stranger")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		creds  func() credentials.TransportCredentials
		served bool
	}{
		{"client certificate of the CA", func() credentials.TransportCredentials { return tlsCreds(t, envoy, pki.CAFile) }, true},
		{"no client certificate", func() credentials.TransportCredentials { return tlsCreds(t, xdstest.Pair{}, pki.CAFile) }, false},
		{"certificate of another CA", func() credentials.TransportCredentials { return tlsCreds(t, stranger, pki.CAFile) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A refusal surfaces as whatever the dropped handshake gives the
			// client first (certificate required, broken pipe, EOF).
			r, err := firstClusters(t, addr, tt.creds())
			switch {
			case tt.served && err != nil:
				t.Fatalf("refused: %v", err)
			case !tt.served && err == nil:
				t.Fatalf("served %d clusters without a valid client certificate", len(r.GetResources()))
			}
		})
	}
	t.Run("plain text", func(t *testing.T) {
		if r, err := firstClusters(t, addr, insecure.NewCredentials()); err == nil {
			t.Fatalf("served %d clusters in plain text", len(r.GetResources()))
		}
	})
}

// firstClusters subscribes to CDS over creds and returns the first answer,
// or why there is none.
func firstClusters(t *testing.T, addr string, creds credentials.TransportCredentials) (*discoveryv3.DiscoveryResponse, error) {
	t.Helper()
	a, err := xdstest.DialWith(addr, "mtls-client", creds)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := a.Close(); err != nil {
			t.Logf("close (a refused stream may fail to close): %v", err)
		}
	}()
	if err := a.Subscribe(resource.ClusterType); err != nil {
		return nil, err
	}
	r, err := a.Next(await)
	if errors.Is(err, xdstest.ErrTimeout) {
		return nil, errors.New("test: the stream neither failed nor answered")
	}
	return r, err
}

func tlsCreds(t *testing.T, pair xdstest.Pair, caFile string) credentials.TransportCredentials {
	t.Helper()
	cfg, err := xdstest.ClientTLS(pair, caFile, "controlplane")
	if err != nil {
		t.Fatal(err)
	}
	return credentials.NewTLS(cfg)
}

// A rotated server certificate (cert-manager, a Secret update) is served
// to the next connection without a restart.
func TestMTLSPicksUpRotatedFiles(t *testing.T) {
	pki, files := mtlsSetup(t)
	addr := serveMTLS(t, files, resources(t, "10.0.0.1:8000"))
	envoy, err := pki.Issue("inflow-envoy")
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		cfg, err := xdstest.ClientTLS(envoy, pki.CAFile, "controlplane")
		if err != nil {
			t.Fatal(err)
		}
		cfg.NextProtos = []string{"h2"}
		conn, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := conn.Close(); err != nil {
				t.Error(err)
			}
		}()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	rotated, err := pki.Issue("controlplane-next", "controlplane")
	if err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{rotated.CertFile: files.CertFile, rotated.KeyFile: files.KeyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(filepath.Dir(dst), ".tmp")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			t.Fatal(err)
		}
	}
	if after := serial(); after == before {
		t.Errorf("still serving certificate %s after rotation", before)
	}
}

// An xDS client with a made-up node id receives everything there is to
// receive, and none of it is a credential: the config names secret files,
// and the key written in that file (which the control plane could read
// here, on one machine) appears nowhere. There are no SDS secrets either.
func TestUnknownNodeFindsNoCredential(t *testing.T) {
	dir := t.TempDir()
	const key = "sk-live-7d1f0c9e2b44a1"
	secretDir := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secretDir, 0o700); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(secretDir, "openai.yaml")
	sds := "resources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: openai\n  generic_secret: {secret: {inline_string: " + key + "}}\n"
	if err := os.WriteFile(secretFile, []byte(sds), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "inflow.yaml")
	cfg := `
listeners: [{name: public, address: 127.0.0.1, port: 10000}]
models: [{name: m, pool: p}, {name: gpt, backend: openai}]
pools: [{name: p, endpoints: ["10.0.0.1:8000"]}]
backends: [{name: openai, base_url: "https://api.openai.com/v1", api_key: {secret_file: ` + secretFile + `}}]
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := configfile.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	res, err := translator.Translate(loaded.Config)
	if err != nil {
		t.Fatal(err)
	}
	f := serve(t)
	if _, _, err := f.srv.Publish(context.Background(), res); err != nil {
		t.Fatal(err)
	}

	e, err := xdstest.Connect(f.addr, "made-up-node-"+time.Now().Format("150405.000"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	}()
	var received bytes.Buffer
	record := func(r *discoveryv3.DiscoveryResponse) {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		received.Write(b)
	}
	// Everything an Envoy follows, then every secret by wildcard.
	if err := e.Await(await, func(s *xdstest.State) bool {
		return xdstest.AllAt("1")(s) && len(s.Endpoints) == 1 && len(s.Extensions) == 1
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.Subscribe(resource.SecretType); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{resource.ListenerType, resource.ClusterType, resource.RouteType, resource.EndpointType, resource.ExtensionConfigType, resource.SecretType} {
		// Ask again for each type by wildcard and keep what comes back.
		if err := e.Subscribe(typ); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		r, err := e.Next(time.Until(deadline))
		if errors.Is(err, xdstest.ErrTimeout) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		record(r)
		if r.GetTypeUrl() == resource.SecretType && len(r.GetResources()) > 0 {
			t.Errorf("the server sent %d secrets", len(r.GetResources()))
		}
	}
	for _, m := range e.State.Listeners {
		mustNotHold(t, m, key)
	}
	for _, m := range e.State.Clusters {
		mustNotHold(t, m, key)
	}
	for _, m := range e.State.Routes {
		mustNotHold(t, m, key)
	}
	for _, m := range e.State.Extensions {
		mustNotHold(t, m, key)
	}
	if bytes.Contains(received.Bytes(), []byte(key)) {
		t.Error("a response carries the key")
	}
	if bytes.Contains(received.Bytes(), []byte("Bearer "+key[:3])) || bytes.Contains(received.Bytes(), []byte("generic_secret")) {
		t.Error("a response carries something that looks like a credential")
	}
	if received.Len() == 0 && len(e.State.Clusters) == 0 {
		t.Fatal("test bug: nothing was received")
	}
	c := e.State.Clusters[translator.BackendClusterName("openai")]
	if c == nil || !bytes.Contains(mustMarshal(t, c), []byte(secretFile)) {
		t.Error("the backend cluster does not name the secret file Envoy reads the key from")
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustNotHold(t *testing.T, m proto.Message, key string) {
	t.Helper()
	if bytes.Contains(mustMarshal(t, m), []byte(key)) {
		t.Errorf("%T holds the key", m)
	}
}
