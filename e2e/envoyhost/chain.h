/* One listener filter chain: its HTTP connection manager settings and HTTP
 * filters. Connections keep the chain they were accepted with, as Envoy's
 * do; a changed chain is a new object and the old one's connections drain. */
#ifndef ENVOYHOST_CHAIN_H
#define ENVOYHOST_CHAIN_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

#include "accesslog.h"
#include "fconfig.h"
#include "localreply.h"
#include "match.h"
#include "routecfg.h"

enum { ESCAPED_KEEP = 0, ESCAPED_REJECT, ESCAPED_REDIRECT, ESCAPED_FORWARD };
enum { SERVER_OVERWRITE = 0, SERVER_APPEND_IF_ABSENT, SERVER_PASS_THROUGH };

typedef struct chain {
  atomic_int refs;
  char *listener, *hash, *stat_prefix;
  uint32_t buffer_limit; /* per_connection_buffer_limit_bytes */
  /* HCM (extensions/filters/network/http_connection_manager/v3) */
  size_t max_header_bytes, max_headers;
  int64_t stream_idle_timeout_ms, request_timeout_ms, request_headers_timeout_ms;
  int normalize_path, merge_slashes, strip_any_host_port, use_remote_address, enable_trailers, proxy_100_continue;
  int accept_http_10;
  int headers_with_underscores; /* H1_UNDERSCORE_* */
  /* path_with_escaped_slashes_action: 0 KEEP_UNCHANGED (the default),
   * ESCAPED_REJECT, ESCAPED_REDIRECT, ESCAPED_FORWARD */
  int escaped_slashes;
  /* server_header_transformation: SERVER_OVERWRITE (default), _APPEND_IF_ABSENT, _PASS_THROUGH */
  int server_header;
  /* the router's suppress_envoy_headers */
  int suppress_envoy_headers;
  char *default_host_for_http_10;
  char *rds;            /* RDS route config name, or */
  routecfg_t *inline_rc; /* route_config */
  localreply_t *lr;
  accesslog_t **logs;
  size_t nlogs;
  /* http_filters: [health_check]? [golang]? then the router; the
   * health_check filter's headers (pass_through_mode false) */
  hdrmatch_t *hc;
  size_t nhc;
  int has_hc;
  int has_golang;
  fconfig_t *golang;  /* inline typed_config, or */
  char *golang_ecds;  /* config_discovery: the TypedExtensionConfig name */
  /* http.<stat_prefix>.* */
  atomic_long *rq_total, *rq_2xx, *rq_3xx, *rq_4xx, *rq_5xx, *rq_rx_reset, *rq_response_before_rq_complete,
      *cx_protocol_error, *rq_timeout, *rq_idle_timeout, *continue_sent, *cx_drain_close;
} chain_t;

/* j: the companion's listener JSON. golang is the filter config already
 * built for an inline golang filter (NULL otherwise); the chain takes it. */
chain_t *chain_parse(json_t *j, fconfig_t *golang, char *err, size_t errlen);
void chain_ref(chain_t *c);
void chain_unref(chain_t *c);

#endif
