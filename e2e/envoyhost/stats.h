/* The FilterConfig's metric store (DefineMetric & co.) and the admin /stats
 * text output. */
#ifndef ENVOYHOST_STATS_H
#define ENVOYHOST_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "api.h"
#include "buffer.h"

/* httpConfigInternal: httpConfig first, then the weak FilterConfig link. */
typedef struct host_http_config {
  httpConfig base;
  int filter_config; /* index of the FilterConfig; the host has exactly one */
} host_http_config_t;

/* The FilterConfig lives until shutdown; cleared, metric calls get FilterIsGone. */
extern atomic_int g_filter_config_alive;

CAPIStatus metrics_define(uint32_t type, const char *name, size_t len, uint32_t *id);
CAPIStatus metrics_increment(uint32_t id, int64_t offset);
CAPIStatus metrics_get(uint32_t id, uint64_t *value);
CAPIStatus metrics_record(uint32_t id, uint64_t value);
/* Envoy-style "name: value" lines, sorted by name. */
void stats_render(buf_t *out);

#endif
