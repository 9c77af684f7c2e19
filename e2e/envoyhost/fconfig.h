/* The golang filter's parsed plugin configs, with Envoy's lifetimes:
 * FilterConfig (one per inline filter config or ECDS resource version) is
 * shared by the filter chain or ECDS provider and by every stream that uses
 * it, and calls envoyGoFilterDestroyHttpPluginConfig when the last of them
 * lets go, on whichever thread that is (golang_filter.cc:1828-1832);
 * RoutePluginConfig is a per-route config, merged over the filter-level id
 * lazily and cached per parent (golang_filter.cc:1984-2050). */
#ifndef ENVOYHOST_FCONFIG_H
#define ENVOYHOST_FCONFIG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "buffer.h"
#include "stats.h"

/* httpConfigInternal: httpConfig first (Go reads it), then the weak link to
 * the FilterConfig's metric store. Go frees it from a GC finalizer. */
typedef struct host_http_config {
  httpConfig base;
  metric_ctl_t *ctl;
} host_http_config_t;

typedef struct fconfig {
  atomic_int refs;
  const char *plugin_name; /* interned: Go may read it as long as it likes */
  uint64_t id;
  char *hash;  /* what the config was built from; equal hashes share one config */
  char *label; /* for logs: "ecds inflow", "listener public" */
  metric_ctl_t *ctl;
} fconfig_t;

/* FilterConfig::newGoPluginConfig: NULL with err on a parse failure, which
 * makes the resource carrying it rejected. */
fconfig_t *fconfig_create(const char *plugin_name, const char *label, const char *hash, const void *any,
                          size_t len, char *err, size_t errlen);
void fconfig_ref(fconfig_t *f);
void fconfig_unref(fconfig_t *f);

typedef struct rplugin {
  const char *plugin_name;
  uint64_t id;
  pthread_mutex_t mu;
  uint64_t merged, cached_parent;
} rplugin_t;

/* RoutePluginConfig: parsed with is_route_config=1 at once (the library is
 * loaded before any route arrives). */
rplugin_t *rplugin_create(const char *plugin_name, const void *any, size_t len, char *err, size_t errlen);
/* getMergedConfigId: merges over parent once, re-merging (and destroying
 * the stale merged id with need_delay=1) when the parent changed. */
uint64_t rplugin_merged(rplugin_t *r, uint64_t parent);
void rplugin_free(rplugin_t *r);

const char *intern_plugin_name(const char *name);

#endif
