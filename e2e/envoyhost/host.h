/* Process-wide settings and counters of the host. */
#ifndef ENVOYHOST_HOST_H
#define ENVOYHOST_HOST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct host_config {
  uint32_t concurrency;
  const char *library;        /* the one Go library this process loads */
  const char *library_id;     /* its library_id, once a config named one */
  const char *bind_listeners; /* test harness: bind every listener here, port 0 */
  /* test harness: --listener-address NAME=IP:PORT pins a listener */
  const char **pin_names, **pin_addrs;
  size_t npins;
} host_config_t;

extern host_config_t g_cfg;

/* Host-level counters, shown on /stats next to the filter's metrics. */
typedef struct host_stats {
  atomic_long downstream_rq_total, downstream_rq_2xx, downstream_rq_3xx, downstream_rq_4xx, downstream_rq_5xx;
  atomic_long downstream_rq_reset, local_replies, upstream_rq_total, upstream_rq_failed;
  atomic_long route_cache_cleared, upstream_override_host, panic_error, dynamic_metadata_set;
  atomic_long finalized_requests, content_length_mismatch, async_continues, decode_read_disabled;
  atomic_long plugin_configs_created, plugin_configs_destroyed, plugin_configs_destroyed_on_worker;
  atomic_long config_pushes, config_pushes_rejected;
} host_stats_t;

extern host_stats_t g_stats;

uint64_t now_ns(void);

#endif
