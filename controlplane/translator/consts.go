package translator

import "time"

// Names Envoy knows the filters by. The keys shared with the filter (headers,
// metadata, the plugin name) are in filter/protocol.
const (
	routerFilterName = "envoy.filters.http.router"
	hcmFilterName    = "envoy.filters.network.http_connection_manager"
	tlsSocketName    = "envoy.transport_sockets.tls"
	// Upstream (cluster) HTTP filters: the credential injector, then the
	// codec every upstream filter chain must end with.
	credentialInjectorName  = "envoy.filters.http.credential_injector"
	genericCredentialName   = "envoy.http.injected_credentials.generic"
	upstreamCodecName       = "envoy.filters.http.upstream_codec"
	httpProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	overrideHostPolicyName  = "envoy.load_balancing_policies.override_host"
	leastRequestPolicyName  = "envoy.load_balancing_policies.least_request"
	// libraryID lets Envoy load the .so once for every listener.
	libraryID = "inflow"
)

// Timeouts and limits, each sized for LLM traffic rather than Envoy's
// defaults, which assume short request/response APIs.
const (
	// routeTimeout 0 disables Envoy's 15 s whole-response timeout: a long
	// generation can stream for many minutes.
	routeTimeout = 0 * time.Second
	// streamIdleTimeout ends a stream that sent nothing for this long. A
	// reasoning model can think for minutes before its first token, and
	// queued requests wait in vLLM before any byte comes back.
	streamIdleTimeout = 10 * time.Minute
	// requestHeadersTimeout bounds slow-loris clients without touching
	// slow generations (it only covers receiving the request headers).
	requestHeadersTimeout = 10 * time.Second
	// poolConnectTimeout is short: model servers are in-cluster pods and a
	// dead pod should fail fast rather than stall the request.
	poolConnectTimeout = 2 * time.Second
	// backendConnectTimeout allows for internet round trips and TLS.
	backendConnectTimeout = 10 * time.Second
	// originalDstCleanup keeps idle per-pod hosts (and their warm
	// connections) for a while; pods come and go on a much slower scale.
	originalDstCleanup = 60 * time.Second
	// dnsRefresh re-resolves external backends; LOGICAL_DNS also honours
	// connection reuse so this mostly matters for failover.
	dnsRefresh = 30 * time.Second
	// circuitBreakerLimit replaces Envoy's default of 1024 concurrent
	// requests per cluster: one LLM stream stays open for minutes, so a
	// busy gateway holds many thousands at once.
	circuitBreakerLimit = 100_000
	// bufferHeadroom is added to the filter's max body so Envoy's own
	// per-connection buffer (1 MiB by default) never 413s before the
	// filter has seen the body it buffers (StopAndBuffer) and headers.
	bufferHeadroom = 1 << 20
)

// retryOn is when a pool route retries on the next listed endpoint.
const retryOn = "connect-failure,reset,retriable-status-codes"
