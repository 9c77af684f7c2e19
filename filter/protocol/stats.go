package protocol

import "strings"

// Envoy stats the filter defines through the golang filter's metrics API,
// as Envoy's /stats shows them. Dashboards and alerts depend on them: a
// rename is a breaking change.
const (
	StatRequests       = "inflow_requests_total"
	StatModelRewrites  = "inflow_model_rewrites_total"
	StatRejected400    = "inflow_rejected_400_total"
	StatRejected404    = "inflow_rejected_404_total"
	StatRejected405    = "inflow_rejected_405_total"
	StatRejected413    = "inflow_rejected_413_total"
	StatRejected429    = "inflow_rejected_429_total"
	StatRejected503    = "inflow_rejected_503_total"
	StatInternalErrors = "inflow_internal_errors_total"
	StatInFlight       = "inflow_requests_in_flight"
	// Envoy's own error replies to inference requests (no healthy
	// upstream, connect failure, timeouts, its buffer limit's 413), seen on
	// the filter's encode path; a 413 also counts in StatRejected413.
	StatEnvoyReplies4xx = "inflow_envoy_replies_4xx_total"
	StatEnvoyReplies5xx = "inflow_envoy_replies_5xx_total"
	// StatCostErrors counts configured costs whose CEL expression failed at
	// the end of a response: the key is then not written.
	StatCostErrors = "inflow_cost_errors_total"
	// StatBackendEjections counts external backends of split models taken
	// out of service by the filter's passive health check.
	StatBackendEjections = "inflow_backend_ejections_total"
)

// Token stats by type (input, output, cached_input, cache_creation_input,
// reasoning): the gateway's in TokenStat, each client-facing model's in
// ModelTokenStat.
func TokenStat(tokenType string) string { return "inflow_tokens_" + tokenType + "_total" }

// ModelTokenStat is inflow.model.<model>.tokens_<type>_total.
func ModelTokenStat(model, tokenType string) string {
	return "inflow.model." + StatSegment(model) + ".tokens_" + tokenType + "_total"
}

// Per-pool stats, named by PoolStat, and per-endpoint stats, named by
// EndpointStat.
const (
	PoolStatSheds          = "sheds_total"
	PoolStatFailOpens      = "fail_opens_total"
	PoolStatScrapeErrors   = "scrape_errors_total"
	PoolStatStaleEndpoints = "stale_endpoints" // a gauge
	EndpointStatPicks      = "picks_total"
	// What went through the state relay (filter config shared_state).
	PoolStatSharedConnected          = "shared_connected" // a gauge: 1 while a relay stream is up
	PoolStatScrapesSkipped           = "scrapes_skipped_total"
	PoolStatSharedPlacementsSent     = "shared_placements_sent_total"
	PoolStatSharedPlacementsReceived = "shared_placements_received_total"
	PoolStatSharedPlacementsUnknown  = "shared_placements_unmatched_total"
	PoolStatSharedPlacementsDropped  = "shared_placements_dropped_total"
	PoolStatSharedSnapshotsReceived  = "shared_snapshots_received_total"
)

// PoolStat is the name of stat of pool: inflow.pool.<pool>.<stat>.
func PoolStat(pool, stat string) string {
	return "inflow.pool." + StatSegment(pool) + "." + stat
}

// EndpointStat is the name of stat of the endpoint addr ("ip:port",
// "[v6]:port") of pool: inflow.pool.<pool>.endpoint.<addr>.<stat>.
func EndpointStat(pool, addr, stat string) string {
	return "inflow.pool." + StatSegment(pool) + ".endpoint." + StatSegment(addr) + "." + stat
}

// StatSegment makes s one segment of a dotted stat name: Envoy splits stat
// names on '.', and ':' and brackets would make IPv6 addresses ambiguous,
// so 10.0.0.1:8000 becomes 10_0_0_1_8000 and [fd00::1]:8000 fd00__1_8000;
// a model's '/' (meta-llama/Llama-3.1-8B) becomes '_' too.
func StatSegment(s string) string { return statSegment.Replace(s) }

var statSegment = strings.NewReplacer(".", "_", ":", "_", "/", "_", "[", "", "]", "")

// PromPoolMetric is the Prometheus name of a per-pool stat where there is
// no Envoy to hold it (inflow-epp's /metrics): the pool is a label there,
// inflow_pool_<stat>{pool="..."}.
func PromPoolMetric(stat string) string { return "inflow_pool_" + stat }

// PromEndpointMetric is PromPoolMetric for a per-endpoint stat:
// inflow_pool_endpoint_<stat>{pool="...",endpoint="ip:port"}.
func PromEndpointMetric(stat string) string { return "inflow_pool_endpoint_" + stat }
