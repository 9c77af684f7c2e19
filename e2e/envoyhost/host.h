/* Process-wide settings and counters of the host. */
#ifndef ENVOYHOST_HOST_H
#define ENVOYHOST_HOST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct host_config {
  const char *plugin_name;
  size_t plugin_name_len;
  uint64_t config_id;        /* id returned by envoyGoFilterNewHttpPluginConfig */
  uint32_t buffer_limit;     /* Envoy per-stream buffer limit (decoder/encoder bufferLimit()) */
  uint32_t concurrency;
  const char *default_upstream;
  const char *listen_addr;   /* for DownstreamLocalAddress */
  int upstream_timeout_s;
  size_t read_chunk;         /* request body is fed to the filter in slices of this size */
} host_config_t;

extern host_config_t g_cfg;

/* Host-level counters, shown on /stats next to the filter's metrics. */
typedef struct host_stats {
  atomic_long downstream_rq_total, downstream_rq_2xx, downstream_rq_3xx, downstream_rq_4xx, downstream_rq_5xx;
  atomic_long downstream_rq_reset, local_replies, upstream_rq_total, upstream_rq_failed;
  atomic_long route_cache_cleared, upstream_override_host, panic_error, dynamic_metadata_set;
  atomic_long finalized_requests, content_length_mismatch, async_continues, decode_read_disabled;
} host_stats_t;

extern host_stats_t g_stats;

uint64_t now_ns(void);

#endif
