/* Upstream clusters and host selection, as Envoy's cluster manager picks:
 * a filter's SetUpstreamOverrideHost first, if the cluster knows that host
 * (ClusterEntry::chooseHost, cluster_manager_impl.cc:2131-2161); then the
 * cluster's load balancer: ORIGINAL_DST (original_dst_cluster.cc:32-190),
 * OverrideHost with its fallback (override_host/load_balancer.cc:153-328),
 * ROUND_ROBIN or LEAST_REQUEST (two random choices). */
#ifndef ENVOYHOST_CLUSTER_H
#define ENVOYHOST_CLUSTER_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

#include "headermap.h"
#include "metadata.h"

/* A host of a cluster. Kept for the life of the process per cluster name
 * and address, so active-request counts survive cluster updates. */
typedef struct host {
  char addr[64]; /* ip:port as Address::asString: [v6]:port */
  char ip[48];
  uint16_t port;
  atomic_long active_rq;
} host_t;

/* Counters per cluster name (cluster.<name>.*) and the circuit breaker state. */
typedef struct cstats {
  char *name;
  atomic_long *rq_total, *rq_active, *rq_retry, *rq_retry_success, *rq_retry_overflow, *rq_timeout,
      *rq_per_try_timeout, *rq_pending_overflow, *cx_total, *cx_connect_fail, *cx_connect_timeout, *cx_active,
      *cx_none_healthy, *original_dst_host_invalid, *rq_2xx, *rq_4xx, *rq_5xx;
  atomic_long active_retries;
  host_t **known; /* every host this cluster has had */
  size_t nknown, capknown;
  struct cstats *next;
} cstats_t;

enum { CT_STATIC, CT_ORIGINAL_DST };
enum { LB_ROUND_ROBIN, LB_LEAST_REQUEST, LB_CLUSTER_PROVIDED, LB_OVERRIDE_HOST };

typedef struct md_path {
  char *ns;
  char **keys;
  size_t nkeys;
} md_path_t;

typedef struct override_source {
  char *header; /* or */
  md_path_t md;
} override_source_t;

/* UpstreamTlsContext: verify against a CA bundle and subject alt names, send SNI. */
typedef struct upstream_tls {
  void *ctx; /* SSL_CTX */
  char *sni;
  char **dns_sans;
  size_t ndns;
  char *ip_san;
} upstream_tls_t;

typedef struct credinject {
  char *secret, *header, *prefix;
  int overwrite, allow_missing;
} credinject_t;

typedef struct cluster {
  atomic_int refs;
  char *name, *hash;
  int type, lb, fallback_lb;
  char *odst_header; /* NULL: use_http_header is off */
  md_path_t odst_md;
  override_source_t *sources;
  size_t nsources;
  host_t **hosts;
  size_t nhosts;
  host_t *default_host; /* static mode only: the restored local address */
  int64_t connect_timeout_ms;
  uint32_t buffer_limit;
  long max_connections, max_pending, max_requests, max_retries;
  credinject_t *cred;
  upstream_tls_t *tls;
  cstats_t *st;
  atomic_uint rr;
} cluster_t;

/* j is the companion's cluster (see hostxds/cluster.go). */
cluster_t *cluster_parse(json_t *j, char *err, size_t errlen);
void cluster_ref(cluster_t *c);
void cluster_unref(cluster_t *c);

/* What a pick reads from the stream, and the OverrideHost state it keeps
 * across the retries of one request (OverrideHostFilterState). */
typedef struct pick_ctx {
  const hmap_t *headers;
  const metadata_t *md;
  const char *override_host; /* SetUpstreamOverrideHost, "" if none */
  int override_strict;
  char **selected; /* OverrideHost: the parsed list, consumed in order */
  size_t nselected, next_selected;
  int selected_init;
  uint64_t rng;
} pick_ctx_t;

void pick_ctx_free(pick_ctx_t *p);
/* A new SSL object (SNI and SAN checks set) for a TLS cluster's connection. */
void *cluster_new_ssl(const cluster_t *c);
/* NULL: no host (503 no healthy upstream). */
host_t *cluster_pick(cluster_t *c, pick_ctx_t *p);

/* Address::Utility::parseInternetAddressAndPortNoThrow(s, v6only=false):
 * "a.b.c.d:port" or "[v6]:port", nothing around it. */
int parse_ip_port(const char *s, char *ip, size_t iplen, uint16_t *port);

#endif
