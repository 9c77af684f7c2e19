#include "fconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dso.h"
#include "host.h"
#include "log.h"
#include "worker.h"

static pthread_mutex_t names_mu = PTHREAD_MUTEX_INITIALIZER;
static char **names;
static size_t nnames;

const char *intern_plugin_name(const char *name) {
  pthread_mutex_lock(&names_mu);
  for (size_t i = 0; i < nnames; i++)
    if (strcmp(names[i], name) == 0) {
      pthread_mutex_unlock(&names_mu);
      return names[i];
    }
  names = realloc(names, (nnames + 1) * sizeof(char *));
  if (names == NULL) abort();
  names[nnames] = strdup(name);
  const char *s = names[nnames++];
  pthread_mutex_unlock(&names_mu);
  return s;
}

fconfig_t *fconfig_create(const char *plugin_name, const char *label, const char *hash, const void *any,
                          size_t len, char *err, size_t errlen) {
  fconfig_t *f = calloc(1, sizeof(*f));
  host_http_config_t *hc = calloc(1, sizeof(*hc));
  if (f == NULL || hc == NULL) abort();
  atomic_store(&f->refs, 1);
  f->plugin_name = intern_plugin_name(plugin_name);
  f->hash = strdup(hash ? hash : "");
  f->label = strdup(label ? label : "");
  f->ctl = metric_ctl_new();
  hc->ctl = f->ctl;
  metric_ctl_ref(f->ctl); /* the httpConfigInternal's weak link */
  hc->base.plugin_name_ptr = (uint64_t)(uintptr_t)f->plugin_name;
  hc->base.plugin_name_len = strlen(f->plugin_name);
  hc->base.config_ptr = (uint64_t)(uintptr_t)any;
  hc->base.config_len = len;
  hc->base.is_route_config = 0;
  hc->base.concurrency = g_cfg.concurrency;
  /* Go keeps hc (createConfig) and frees it through envoyGoConfigHttpFinalize */
  f->id = g_dso.new_config(&hc->base);
  if (f->id == 0) {
    snprintf(err, errlen, "golang filter failed to parse plugin config: %s (%s)", plugin_name, f->label);
    metric_ctl_kill(f->ctl);
    metric_ctl_unref(f->ctl);
    free(f->hash);
    free(f->label);
    free(f);
    return NULL; /* Go may still hold hc; its finalizer frees it */
  }
  atomic_fetch_add(&g_stats.plugin_configs_created, 1);
  hlog(LOG_INFO, "golang filter config %s: id %llu", f->label, (unsigned long long)f->id);
  return f;
}

void fconfig_ref(fconfig_t *f) { atomic_fetch_add(&f->refs, 1); }

void fconfig_unref(fconfig_t *f) {
  if (f == NULL || atomic_fetch_sub(&f->refs, 1) != 1) return;
  /* ~FilterConfig: the weak_ptr in httpConfigInternal expires before the
   * destructor body runs, so metric calls made from Destroy already get
   * CAPIFilterIsGone */
  metric_ctl_kill(f->ctl);
  int on_worker = worker_current() != NULL;
  hlog(LOG_INFO, "golang filter config %s: destroying id %llu on %s", f->label, (unsigned long long)f->id,
       on_worker ? "a worker" : "the main thread");
  g_dso.destroy_config(f->id, 0);
  atomic_fetch_add(&g_stats.plugin_configs_destroyed, 1);
  if (on_worker) atomic_fetch_add(&g_stats.plugin_configs_destroyed_on_worker, 1);
  metric_ctl_unref(f->ctl);
  free(f->hash);
  free(f->label);
  free(f);
}

rplugin_t *rplugin_create(const char *plugin_name, const void *any, size_t len, char *err, size_t errlen) {
  rplugin_t *r = calloc(1, sizeof(*r));
  if (r == NULL) abort();
  r->plugin_name = intern_plugin_name(plugin_name);
  pthread_mutex_init(&r->mu, NULL);
  /* RoutePluginConfig::config_ is owned by Envoy, never by Go's GC */
  httpConfig c;
  memset(&c, 0, sizeof(c));
  c.plugin_name_ptr = (uint64_t)(uintptr_t)r->plugin_name;
  c.plugin_name_len = strlen(r->plugin_name);
  c.config_ptr = (uint64_t)(uintptr_t)any;
  c.config_len = len;
  c.is_route_config = 1;
  c.concurrency = g_cfg.concurrency;
  r->id = g_dso.new_config(&c);
  if (r->id == 0) {
    snprintf(err, errlen, "golang filter failed to parse plugin config: %s (per-route config)", plugin_name);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return NULL;
  }
  return r;
}

uint64_t rplugin_merged(rplugin_t *r, uint64_t parent) {
  pthread_mutex_lock(&r->mu);
  if (r->merged == 0 || r->cached_parent != parent) {
    /* another worker may be about to use the stale id: Go deletes it 2 s later */
    if (r->merged) g_dso.destroy_config(r->merged, 1);
    r->merged = g_dso.merge_config((uint64_t)(uintptr_t)r->plugin_name, strlen(r->plugin_name), parent, r->id);
    r->cached_parent = parent;
  }
  uint64_t id = r->merged;
  pthread_mutex_unlock(&r->mu);
  return id;
}

void rplugin_free(rplugin_t *r) {
  if (r == NULL) return;
  g_dso.destroy_config(r->id, 0);
  if (r->merged && r->merged != r->id) g_dso.destroy_config(r->merged, 0);
  pthread_mutex_destroy(&r->mu);
  free(r);
}
