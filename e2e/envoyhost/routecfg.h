/* A route table (RouteConfiguration from RDS or inline in the HCM), matched
 * as Envoy's RouteMatcher does (source/common/router/config_impl.cc):
 * virtual host by exact domain, then the longest suffix wildcard, then the
 * longest prefix wildcard, then "*" (findVirtualHost, 1995-2052); the first
 * route whose headers and path match (matchRoute 864-900, Prefix/Path/
 * PathSeparatedPrefix matches 1445-1600, query and fragment stripped,
 * case-sensitive unless case_sensitive is false). */
#ifndef ENVOYHOST_ROUTECFG_H
#define ENVOYHOST_ROUTECFG_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

#include "buffer.h"
#include "fconfig.h"
#include "headermap.h"
#include "hmut.h"
#include "match.h"

enum { PATH_PREFIX, PATH_EXACT, PATH_SEPARATED_PREFIX };
enum { ACTION_ROUTE, ACTION_DIRECT };

/* retry_on conditions (router/retry_state_impl.cc parseRetryOn) */
enum {
  RETRY_5XX = 1 << 0, RETRY_GATEWAY_ERROR = 1 << 1, RETRY_CONNECT_FAILURE = 1 << 2, RETRY_RESET = 1 << 3,
  RETRY_RETRIABLE_STATUS_CODES = 1 << 4, RETRY_REFUSED_STREAM = 1 << 5, RETRY_RETRIABLE_4XX = 1 << 6,
  RETRY_RESET_BEFORE_REQUEST = 1 << 7,
};

typedef struct retry_policy {
  int set;
  unsigned on;
  int num_retries;
  int *codes;
  size_t ncodes;
  int64_t per_try_timeout_ms; /* 0: none */
  int64_t base_ms, max_ms;    /* back-off */
} retry_policy_t;

typedef struct route {
  char *name;
  int path_kind;
  char *path;
  int case_sensitive;
  hdrmatch_t *headers;
  size_t nheaders;
  int action;
  /* ACTION_ROUTE */
  char *cluster;
  char *prefix_rewrite, *host_rewrite;
  int64_t timeout_ms;      /* 15 s unless set; 0 disables */
  int64_t idle_timeout_ms; /* -1: the HCM's stream_idle_timeout */
  retry_policy_t retry;
  /* ACTION_DIRECT */
  int direct_status;
  buf_t direct_body;
  hmuts_t req_headers, resp_headers;
  int64_t body_buffer_limit; /* -1: not set */
  rplugin_t *golang;         /* typed_per_filter_config of the golang filter */
} route_t;

typedef struct vhost {
  char *name;
  char **domains;
  size_t ndomains;
  route_t *routes;
  size_t nroutes;
  hmuts_t req_headers, resp_headers;
  retry_policy_t retry;
  int64_t body_buffer_limit;
  rplugin_t *golang;
} vhost_t;

typedef struct routecfg {
  atomic_int refs;
  char *name, *hash;
  vhost_t *vhosts;
  size_t nvhosts;
  hmuts_t req_headers, resp_headers;
  int ignore_port;
} routecfg_t;

/* j is the RouteConfiguration in proto3 JSON, with each golang per-route
 * config replaced by "golang_per_route": {"plugin": name, "config": base64 Any}. */
routecfg_t *routecfg_parse(json_t *j, char *err, size_t errlen);
void routecfg_ref(routecfg_t *rc);
void routecfg_unref(routecfg_t *rc);

/* RouteMatcher::route: NULL when no virtual host or no route matches. */
const route_t *routecfg_match(const routecfg_t *rc, const hmap_t *headers, const vhost_t **vh);

int64_t parse_duration_ms(json_t *j, int64_t dflt);

#endif
