package admin_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/inflow-gateway/inflow/controlplane/admin"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Code, string(body)
}

func TestHealthAndReadiness(t *testing.T) {
	h := admin.NewHandler(&admin.Metrics{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tests := []struct {
		path     string
		ready    bool
		wantCode int
	}{
		{"/healthz", false, http.StatusOK},
		{"/readyz", false, http.StatusServiceUnavailable},
		{"/healthz", true, http.StatusOK},
		{"/readyz", true, http.StatusOK},
		{"/nope", true, http.StatusNotFound},
	}
	for _, tt := range tests {
		if tt.ready {
			h.SetReady()
		}
		if code, _ := get(t, h, tt.path); code != tt.wantCode {
			t.Errorf("%s (ready=%v): %d, want %d", tt.path, tt.ready, code, tt.wantCode)
		}
	}
}

// The hand-written exposition must parse with Prometheus' own parser.
func TestMetricsParseAsPrometheusText(t *testing.T) {
	m := &admin.Metrics{}
	m.Reload(admin.ReloadApplied)
	m.Reload(admin.ReloadRejected)
	m.Reload(admin.ReloadRejected)
	m.Snapshot(7, admin.ResourceCounts{Listeners: 1, Routes: 1, Clusters: 3, Endpoints: 2, Extensions: 1})
	m.StreamOpened()
	m.NACK()
	m.RelayStreamOpened()
	m.RelayStreamOpened()
	m.RelayStreamClosed()
	m.RelayFrames(5, 2)
	m.RelayPeerLinks(1)
	m.RelayPeerLinks(1)
	m.RelayPeerLinks(1)
	m.RelayPeerLinks(-1)
	h := admin.NewHandler(m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	code, body := get(t, h, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	value := func(name string, label ...string) float64 {
		for _, mt := range families[name].GetMetric() {
			if len(label) == 0 {
				return mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
			}
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == label[0] && lp.GetValue() == label[1] {
					return mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
				}
			}
		}
		t.Fatalf("no sample %s%v", name, label)
		return 0
	}
	checks := []struct {
		name  string
		label []string
		want  float64
	}{
		{"inflow_controlplane_config_reloads_total", []string{"result", "applied"}, 1},
		{"inflow_controlplane_config_reloads_total", []string{"result", "rejected"}, 2},
		{"inflow_controlplane_config_last_reload_successful", nil, 0},
		{"inflow_controlplane_snapshot_version", nil, 7},
		{"inflow_controlplane_resources", []string{"type", "cluster"}, 3},
		{"inflow_controlplane_xds_streams_active", nil, 1},
		{"inflow_controlplane_xds_nacks_total", nil, 1},
		{"inflow_controlplane_relay_streams_active", nil, 1},
		{"inflow_controlplane_relay_peer_links_active", nil, 2},
		{"inflow_controlplane_relay_frames_total", []string{"result", "forwarded"}, 5},
		{"inflow_controlplane_relay_frames_total", []string{"result", "dropped"}, 2},
	}
	for _, c := range checks {
		if got := value(c.name, c.label...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.label, got, c.want)
		}
	}
}
