// Package admin serves the control plane's health checks and Prometheus
// metrics. The handful of metrics are written in the Prometheus text format
// by hand rather than pulling in client_golang for a few counters.
package admin

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"sync/atomic"
	"time"
)

// Reload outcomes, the values of the "result" label.
const (
	ReloadApplied   = "applied"   // a new snapshot version was pushed
	ReloadUnchanged = "unchanged" // the inputs or resources did not change
	ReloadRejected  = "rejected"  // invalid: the last good snapshot stays
)

// Metrics are the control plane's counters. The zero value is ready; all
// methods are safe for concurrent use.
type Metrics struct {
	reloadsApplied, reloadsUnchanged, reloadsRejected atomic.Uint64
	lastReloadOK                                      atomic.Bool
	lastAppliedUnixMilli                              atomic.Int64
	snapshotVersion                                   atomic.Uint64
	resources                                         atomic.Pointer[ResourceCounts]
	streamsActive                                     atomic.Int64
	streamsTotal                                      atomic.Uint64
	nacks                                             atomic.Uint64
	relayStreams, relayPeerLinks                      atomic.Int64
	relayForwarded, relayDropped                      atomic.Uint64
}

// Reload counts one reload attempt by outcome.
func (m *Metrics) Reload(result string) {
	switch result {
	case ReloadApplied:
		m.reloadsApplied.Add(1)
		m.lastAppliedUnixMilli.Store(time.Now().UnixMilli())
	case ReloadUnchanged:
		m.reloadsUnchanged.Add(1)
	case ReloadRejected:
		m.reloadsRejected.Add(1)
		m.lastReloadOK.Store(false)
		return
	}
	m.lastReloadOK.Store(true)
}

// Reloads is the number of reloads with the given result (tests poll it).
func (m *Metrics) Reloads(result string) uint64 {
	switch result {
	case ReloadApplied:
		return m.reloadsApplied.Load()
	case ReloadUnchanged:
		return m.reloadsUnchanged.Load()
	case ReloadRejected:
		return m.reloadsRejected.Load()
	}
	return 0
}

// ResourceCounts are a snapshot's resources by type.
type ResourceCounts struct {
	Listeners, Routes, Clusters, Endpoints, Extensions int
}

// Snapshot records the version now served and its resource counts.
func (m *Metrics) Snapshot(version uint64, counts ResourceCounts) {
	m.snapshotVersion.Store(version)
	m.resources.Store(&counts)
}

// StreamOpened and StreamClosed track xDS streams (one per Envoy with ADS).
func (m *Metrics) StreamOpened() { m.streamsActive.Add(1); m.streamsTotal.Add(1) }

// StreamClosed is StreamOpened's pair.
func (m *Metrics) StreamClosed() { m.streamsActive.Add(-1) }

// NACK counts a resource update an Envoy rejected.
func (m *Metrics) NACK() { m.nacks.Add(1) }

// RelayStreamOpened and RelayStreamClosed track the state relay's streams
// (one per Envoy replica and pool); they implement relay.Observer.
func (m *Metrics) RelayStreamOpened() { m.relayStreams.Add(1) }

// RelayStreamClosed is RelayStreamOpened's pair.
func (m *Metrics) RelayStreamClosed() { m.relayStreams.Add(-1) }

// RelayPeerLinks tracks the links between this relay and its peers (the
// relays of the other control-plane replicas).
func (m *Metrics) RelayPeerLinks(delta int) { m.relayPeerLinks.Add(int64(delta)) }

// RelayFrames counts frames the relay forwarded to a stream, and frames it
// dropped because that stream did not keep up.
func (m *Metrics) RelayFrames(forwarded, dropped uint64) {
	m.relayForwarded.Add(forwarded)
	m.relayDropped.Add(dropped)
}

// WriteText writes the metrics in the Prometheus text exposition format.
func (m *Metrics) WriteText(w io.Writer) error {
	p := &printer{w: w}
	p.family("inflow_controlplane_config_reloads_total", "counter", "Config reloads by result: applied, unchanged or rejected (the last good snapshot keeps serving).")
	p.sample(`inflow_controlplane_config_reloads_total{result="applied"}`, float64(m.reloadsApplied.Load()))
	p.sample(`inflow_controlplane_config_reloads_total{result="unchanged"}`, float64(m.reloadsUnchanged.Load()))
	p.sample(`inflow_controlplane_config_reloads_total{result="rejected"}`, float64(m.reloadsRejected.Load()))
	p.family("inflow_controlplane_config_last_reload_successful", "gauge", "1 if the last reload was valid, 0 if it was rejected.")
	p.sample("inflow_controlplane_config_last_reload_successful", boolFloat(m.lastReloadOK.Load()))
	p.family("inflow_controlplane_config_last_applied_timestamp_seconds", "gauge", "Unix time of the last applied config.")
	p.sample("inflow_controlplane_config_last_applied_timestamp_seconds", float64(m.lastAppliedUnixMilli.Load())/1000)
	p.family("inflow_controlplane_snapshot_version", "gauge", "Version of the xDS snapshot being served.")
	p.sample("inflow_controlplane_snapshot_version", float64(m.snapshotVersion.Load()))
	p.family("inflow_controlplane_resources", "gauge", "xDS resources in the served snapshot, by type.")
	var rc ResourceCounts
	if c := m.resources.Load(); c != nil {
		rc = *c
	}
	p.sample(`inflow_controlplane_resources{type="listener"}`, float64(rc.Listeners))
	p.sample(`inflow_controlplane_resources{type="route"}`, float64(rc.Routes))
	p.sample(`inflow_controlplane_resources{type="cluster"}`, float64(rc.Clusters))
	p.sample(`inflow_controlplane_resources{type="endpoint"}`, float64(rc.Endpoints))
	p.sample(`inflow_controlplane_resources{type="extension_config"}`, float64(rc.Extensions))
	p.family("inflow_controlplane_xds_streams_active", "gauge", "Open xDS streams.")
	p.sample("inflow_controlplane_xds_streams_active", float64(m.streamsActive.Load()))
	p.family("inflow_controlplane_xds_streams_total", "counter", "xDS streams opened.")
	p.sample("inflow_controlplane_xds_streams_total", float64(m.streamsTotal.Load()))
	p.family("inflow_controlplane_xds_nacks_total", "counter", "Resource updates rejected by an Envoy (NACK).")
	p.sample("inflow_controlplane_xds_nacks_total", float64(m.nacks.Load()))
	p.family("inflow_controlplane_relay_streams_active", "gauge", "Open state-relay streams (one per Envoy replica and pool).")
	p.sample("inflow_controlplane_relay_streams_active", float64(m.relayStreams.Load()))
	p.family("inflow_controlplane_relay_peer_links_active", "gauge", "Open links between this state relay and the other control-plane replicas' relays (one per pool, peer and direction).")
	p.sample("inflow_controlplane_relay_peer_links_active", float64(m.relayPeerLinks.Load()))
	p.family("inflow_controlplane_relay_frames_total", "counter", "State-relay frames by result: forwarded to a stream, or dropped because the stream did not keep up.")
	p.sample(`inflow_controlplane_relay_frames_total{result="forwarded"}`, float64(m.relayForwarded.Load()))
	p.sample(`inflow_controlplane_relay_frames_total{result="dropped"}`, float64(m.relayDropped.Load()))
	return p.err
}

// printer keeps the first write error so WriteText checks it once.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) family(name, kind, help string) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
	}
}

func (p *printer) sample(series string, v float64) {
	if p.err != nil {
		return
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		_, p.err = fmt.Fprintf(p.w, "%s %d\n", series, int64(v))
		return
	}
	_, p.err = fmt.Fprintf(p.w, "%s %s\n", series, strconv.FormatFloat(v, 'f', -1, 64))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
