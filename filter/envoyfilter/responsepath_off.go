//go:build inflow_request_only

package envoyfilter

// responsePath is off in the request-only build (go build -tags
// inflow_request_only), for make bench-hop only: the filter then does what
// an endpoint picker behind ext_proc does, the request path alone, so its
// cost compares like for like with the ext_proc hop's, whose picker never
// sees the response. Never ship it: it accounts no tokens.
const responsePath = false
