//go:build !inflow_request_only

package envoyfilter

// responsePath: the filter runs its response path (usage accounting, token
// metadata, GenAI metrics, Envoy's error replies counted, the scheduler's
// feedback). Always, except in the request-only build (responsepath_off.go).
const responsePath = true
