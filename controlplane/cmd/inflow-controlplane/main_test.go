package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/inflow-gateway/inflow/controlplane/xds"
	"github.com/inflow-gateway/inflow/controlplane/xds/xdstest"
	"github.com/inflow-gateway/inflow/filter/sharing"
	"github.com/inflow-gateway/inflow/internal/golden"
	"github.com/inflow-gateway/inflow/internal/poll"
)

var example = filepath.Join("..", "..", "example.yaml")

var defaultKube = kubeOptions{leaseName: "inflow-controlplane-leader"}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
		want    options
	}{
		{args: []string{"--config", "c.yaml"}, want: options{config: "c.yaml", xdsAddr: ":18000", egAddr: ":1063", admin: ":18001", kube: defaultKube}},
		{args: []string{"--config", "c.yaml", "--print", "--xds-address", "127.0.0.1:1", "--admin-address", ":2", "--log-level", "debug"},
			want: options{config: "c.yaml", xdsAddr: "127.0.0.1:1", egAddr: ":1063", admin: ":2", print: true, logLevel: slog.LevelDebug, kube: defaultKube}},
		{args: []string{"--config", "c.yaml", "--relay-address", ":18002"}, want: options{config: "c.yaml", xdsAddr: ":18000", egAddr: ":1063", admin: ":18001", relay: ":18002", kube: defaultKube}},
		{args: []string{"--config", "c.yaml", "--relay-address", ":18002", "--relay-peers", "relay-peers.inflow.svc:18002, 10.0.0.2:18002"},
			want: options{config: "c.yaml", xdsAddr: ":18000", egAddr: ":1063", admin: ":18001", relay: ":18002", peers: []string{"relay-peers.inflow.svc:18002", "10.0.0.2:18002"}, kube: defaultKube}},
		{args: []string{"--config", "c", "--relay-peers", "p:18002"}, wantErr: "--relay-peers needs --relay-address"},
		{args: []string{"--config", "c", "--relay-address", ":1", "--relay-peers", "no-port"}, wantErr: "missing port"},
		{args: []string{"--config", "c.yaml", "--sync-credentials", "--kubeconfig", "k", "--identity", "me"},
			want: options{config: "c.yaml", xdsAddr: ":18000", egAddr: ":1063", admin: ":18001",
				kube: kubeOptions{kubeconfig: "k", leaseName: "inflow-controlplane-leader", identity: "me", syncCredentials: true}}},
		{args: nil, wantErr: "--config is required"},
		{args: []string{"--config", "c", "extra"}, wantErr: "unexpected arguments"},
		{args: []string{"--nope"}, wantErr: "flag provided but not defined"},
		{args: []string{"--config", "c", "--xds-tls-cert", "c.pem", "--xds-tls-key", "k.pem", "--xds-client-ca", "ca.pem"},
			want: options{config: "c", xdsAddr: ":18000", egAddr: ":1063", admin: ":18001", xdsTLS: xds.MTLSFiles{CertFile: "c.pem", KeyFile: "k.pem", ClientCAFile: "ca.pem"}, kube: defaultKube}},
		{args: []string{"--config", "c", "--xds-tls-cert", "c.pem", "--xds-tls-key", "k.pem"}, wantErr: "a certificate, its key and a client CA are needed together"},
		{args: []string{"--config", "c", "--envoy-gateway-address", "127.0.0.1:1063", "--envoy-gateway-tls-cert", "c.pem", "--envoy-gateway-tls-key", "k.pem", "--envoy-gateway-client-ca", "ca.pem"},
			want: options{config: "c", xdsAddr: ":18000", egAddr: "127.0.0.1:1063", admin: ":18001", egTLS: xds.MTLSFiles{CertFile: "c.pem", KeyFile: "k.pem", ClientCAFile: "ca.pem"}, kube: defaultKube}},
		{args: []string{"--config", "c", "--envoy-gateway-tls-cert", "c.pem"}, wantErr: "--envoy-gateway-tls-cert"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			got, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v want %+v", got, tt.want)
			}
		})
	}
}

// --print on the shipped example is what the README shows; keep it golden.
func TestPrintExample(t *testing.T) {
	var b bytes.Buffer
	if err := printResources(&b, example); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join("testdata", "example.out.yaml")
	golden.Assert(t, out, b.Bytes())
	golden.Orphans(t, "testdata", map[string]bool{out: true})
}

// serve, as main runs it: ready after the first snapshot, ADS and the
// relay answer, and cancelling stops everything without error.
func TestServeBecomesReadyAndStops(t *testing.T) {
	var lis [3]net.Listener
	for i := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[i] = l
	}
	xdsLis, adminLis, relayLis := lis[0], lis[1], lis[2]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, options{config: example}, xdsLis, adminLis, relayLis, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	ready := "http://" + adminLis.Addr().String() + "/readyz"
	poll.Eventually(t, "/readyz to answer 200", func() bool {
		resp, err := http.Get(ready)
		if err != nil {
			return false
		}
		if cerr := resp.Body.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		return resp.StatusCode == http.StatusOK
	})
	e, err := xdstest.Connect(xdsLis.Addr().String(), "envoy-main-test")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := e.Await(10*time.Second, xdstest.AllAt("1")); err != nil {
		t.Fatal(err)
	}
	if len(e.State.Clusters) != 3 {
		t.Errorf("clusters: %d, want 2 pools + 1 backend", len(e.State.Clusters))
	}
	resp, err := http.Get("http://" + relayLis.Addr().String() + sharing.Path + "gpu")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("relay answered GET with %d, want 405 (it takes POST streams)", resp.StatusCode)
	}
}
