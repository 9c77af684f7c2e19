/* Stats: the metrics Go filters define through a FilterConfig's callbacks
 * (FilterConfig::defineMetric & co., golang_filter.cc:1840-1935: per-config
 * ids over one root-scope store, so a new config defining a known name gets
 * the same stat), the host's own named counters and gauges (listener,
 * cluster, HCM), and the admin /stats text. */
#ifndef ENVOYHOST_STATS_H
#define ENVOYHOST_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "api.h"
#include "buffer.h"

/* The per-FilterConfig metric id table. Alive until the FilterConfig is
 * destroyed; after that every call returns CAPIFilterIsGone, as the
 * weak_ptr<FilterConfig> in httpConfigInternal does. */
typedef struct metric_ctl metric_ctl_t;

metric_ctl_t *metric_ctl_new(void);
/* The FilterConfig is gone: metric calls fail from now on. */
void metric_ctl_kill(metric_ctl_t *c);
void metric_ctl_ref(metric_ctl_t *c);
void metric_ctl_unref(metric_ctl_t *c);

CAPIStatus metrics_define(metric_ctl_t *c, uint32_t type, const char *name, size_t len, uint32_t *id);
CAPIStatus metrics_increment(metric_ctl_t *c, uint32_t id, int64_t offset);
CAPIStatus metrics_get(metric_ctl_t *c, uint32_t id, uint64_t *value);
CAPIStatus metrics_record(metric_ctl_t *c, uint32_t id, uint64_t value);

/* A named host stat, created on first use; the pointer stays valid. */
atomic_long *stat_counter(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
atomic_long *stat_gauge(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Envoy-style "name: value" lines, sorted by name. */
void stats_render(buf_t *out);

#endif
