#include "stats.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filter.h"
#include "host.h"

enum { kCounter = 0, kGauge = 1, kHistogram = 2, kIdIncrement = 0x4 };

/* One stat of the root scope; Go-defined metrics of every config share it by name. */
typedef struct metric {
  char *name;
  int type;
  int64_t value;            /* counter/gauge */
  uint64_t count, sum, max; /* histogram */
} metric_t;

static pthread_mutex_t store_mu = PTHREAD_MUTEX_INITIALIZER;
static metric_t *metrics;
static size_t nmetrics, capmetrics;

typedef struct id_entry {
  uint32_t id;
  size_t metric;
} id_entry_t;

/* MetricStore of one FilterConfig, guarded like FilterConfig::mutex_. */
struct metric_ctl {
  pthread_mutex_t mu;
  int alive, refs;
  id_entry_t *ids;
  size_t nids, capids;
  uint32_t next_id[3];
};

metric_ctl_t *metric_ctl_new(void) {
  metric_ctl_t *c = calloc(1, sizeof(*c));
  if (c == NULL) abort();
  pthread_mutex_init(&c->mu, NULL);
  c->alive = 1;
  c->refs = 1;
  /* MetricStore: ids start at the type (0, 1, 2) and grow by 4 (golang_filter.h) */
  c->next_id[0] = kCounter;
  c->next_id[1] = kGauge;
  c->next_id[2] = kHistogram;
  return c;
}

void metric_ctl_kill(metric_ctl_t *c) {
  pthread_mutex_lock(&c->mu);
  c->alive = 0;
  pthread_mutex_unlock(&c->mu);
}

void metric_ctl_ref(metric_ctl_t *c) {
  pthread_mutex_lock(&c->mu);
  c->refs++;
  pthread_mutex_unlock(&c->mu);
}

void metric_ctl_unref(metric_ctl_t *c) {
  pthread_mutex_lock(&c->mu);
  int last = --c->refs == 0;
  pthread_mutex_unlock(&c->mu);
  if (!last) return;
  pthread_mutex_destroy(&c->mu);
  free(c->ids);
  free(c);
}

static size_t store_find_or_add(int type, const char *name, size_t len) {
  size_t m;
  for (m = 0; m < nmetrics; m++)
    if (metrics[m].type == type && strlen(metrics[m].name) == len && memcmp(metrics[m].name, name, len) == 0)
      return m;
  if (nmetrics == capmetrics) {
    capmetrics = capmetrics ? capmetrics * 2 : 16;
    metrics = realloc(metrics, capmetrics * sizeof(*metrics));
    if (metrics == NULL) abort();
  }
  memset(&metrics[m], 0, sizeof(metrics[m]));
  metrics[m].name = strndup(name, len);
  metrics[m].type = type;
  nmetrics++;
  return m;
}

static metric_t *by_id(metric_ctl_t *c, uint32_t id) {
  for (size_t i = 0; i < c->nids; i++)
    if (c->ids[i].id == id) return &metrics[c->ids[i].metric];
  return NULL;
}

/* Locks the config's table, or reports the config gone. */
static int lock_alive(metric_ctl_t *c) {
  pthread_mutex_lock(&c->mu);
  if (c->alive) {
    pthread_mutex_lock(&store_mu);
    return 1;
  }
  pthread_mutex_unlock(&c->mu);
  return 0;
}

static void unlock(metric_ctl_t *c) {
  pthread_mutex_unlock(&store_mu);
  pthread_mutex_unlock(&c->mu);
}

CAPIStatus metrics_define(metric_ctl_t *c, uint32_t type, const char *name, size_t len, uint32_t *id) {
  if (!lock_alive(c)) return CAPIFilterIsGone;
  if (type > kHistogram) {
    unlock(c);
    return CAPIValueNotFound;
  }
  size_t m = store_find_or_add((int)type, name, len);
  if (c->nids == c->capids) {
    c->capids = c->capids ? c->capids * 2 : 16;
    c->ids = realloc(c->ids, c->capids * sizeof(*c->ids));
    if (c->ids == NULL) abort();
  }
  c->next_id[type] += kIdIncrement;
  c->ids[c->nids].id = c->next_id[type];
  c->ids[c->nids].metric = m;
  c->nids++;
  *id = c->next_id[type];
  unlock(c);
  return CAPIOK;
}

CAPIStatus metrics_increment(metric_ctl_t *c, uint32_t id, int64_t offset) {
  if (!lock_alive(c)) return CAPIFilterIsGone;
  metric_t *m = by_id(c, id);
  if (m != NULL) {
    if (m->type == kCounter && offset > 0) m->value += offset;
    else if (m->type == kGauge) m->value += offset;
  }
  unlock(c);
  return CAPIOK;
}

CAPIStatus metrics_get(metric_ctl_t *c, uint32_t id, uint64_t *value) {
  if (!lock_alive(c)) return CAPIFilterIsGone;
  metric_t *m = by_id(c, id);
  if (m != NULL && m->type != kHistogram) *value = (uint64_t)m->value;
  unlock(c);
  return CAPIOK;
}

CAPIStatus metrics_record(metric_ctl_t *c, uint32_t id, uint64_t value) {
  if (!lock_alive(c)) return CAPIFilterIsGone;
  metric_t *m = by_id(c, id);
  if (m != NULL) {
    if (m->type == kCounter) m->value += (int64_t)value;
    else if (m->type == kGauge) m->value = (int64_t)value;
    else {
      m->count++;
      m->sum += value;
      if (value > m->max) m->max = value;
    }
  }
  unlock(c);
  return CAPIOK;
}

/* ---- named host stats ---- */

typedef struct named {
  char *name;
  int gauge;
  atomic_long v;
  struct named *next;
} named_t;

static pthread_mutex_t named_mu = PTHREAD_MUTEX_INITIALIZER;
static named_t *named;

static atomic_long *named_stat(int gauge, const char *fmt, va_list ap) {
  char name[256];
  vsnprintf(name, sizeof(name), fmt, ap);
  pthread_mutex_lock(&named_mu);
  named_t *n;
  for (n = named; n != NULL; n = n->next)
    if (strcmp(n->name, name) == 0) break;
  if (n == NULL) {
    n = calloc(1, sizeof(*n));
    if (n == NULL) abort();
    n->name = strdup(name);
    n->gauge = gauge;
    n->next = named;
    named = n;
  }
  pthread_mutex_unlock(&named_mu);
  return &n->v;
}

atomic_long *stat_counter(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  atomic_long *v = named_stat(0, fmt, ap);
  va_end(ap);
  return v;
}

atomic_long *stat_gauge(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  atomic_long *v = named_stat(1, fmt, ap);
  va_end(ap);
  return v;
}

/* ---- /stats ---- */

static int cmp_line(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static long rss_bytes(void) {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
  fclose(f);
  return rss * sysconf(_SC_PAGESIZE);
}

void stats_render(buf_t *out) {
  char **lines = NULL;
  size_t n = 0, cap = 0;
#define ADD(...)                                       \
  do {                                                 \
    if (n == cap) {                                    \
      cap = cap ? cap * 2 : 64;                        \
      lines = realloc(lines, cap * sizeof(*lines));    \
      if (lines == NULL) abort();                      \
    }                                                  \
    if (asprintf(&lines[n], __VA_ARGS__) < 0) abort(); \
    n++;                                               \
  } while (0)
#define HOST(name, field) ADD("%s: %ld", name, atomic_load(&g_stats.field))
  HOST("http.envoyhost.downstream_rq_total", downstream_rq_total);
  HOST("http.envoyhost.downstream_rq_2xx", downstream_rq_2xx);
  HOST("http.envoyhost.downstream_rq_3xx", downstream_rq_3xx);
  HOST("http.envoyhost.downstream_rq_4xx", downstream_rq_4xx);
  HOST("http.envoyhost.downstream_rq_5xx", downstream_rq_5xx);
  HOST("http.envoyhost.downstream_rq_reset", downstream_rq_reset);
  HOST("http.envoyhost.local_replies", local_replies);
  HOST("http.envoyhost.golang.panic_error", panic_error);
  HOST("envoyhost.upstream_rq_total", upstream_rq_total);
  HOST("envoyhost.upstream_rq_failed", upstream_rq_failed);
  HOST("envoyhost.route_cache_cleared", route_cache_cleared);
  HOST("envoyhost.upstream_override_host", upstream_override_host);
  HOST("envoyhost.dynamic_metadata_set", dynamic_metadata_set);
  HOST("envoyhost.async_continues", async_continues);
  HOST("envoyhost.content_length_mismatch", content_length_mismatch);
  HOST("envoyhost.finalized_requests", finalized_requests);
  HOST("envoyhost.decode_read_disabled", decode_read_disabled);
  HOST("envoyhost.plugin_configs_created", plugin_configs_created);
  HOST("envoyhost.plugin_configs_destroyed", plugin_configs_destroyed);
  HOST("envoyhost.plugin_configs_destroyed_on_worker", plugin_configs_destroyed_on_worker);
  HOST("envoyhost.config_pushes", config_pushes);
  HOST("envoyhost.config_pushes_rejected", config_pushes_rejected);
  ADD("envoyhost.live_requests: %ld", atomic_load(&g_live_requests));
  ADD("envoyhost.rss_bytes: %ld", rss_bytes());
  pthread_mutex_lock(&named_mu);
  for (named_t *s = named; s != NULL; s = s->next) ADD("%s: %ld", s->name, atomic_load(&s->v));
  pthread_mutex_unlock(&named_mu);
  pthread_mutex_lock(&store_mu);
  for (size_t i = 0; i < nmetrics; i++) {
    if (metrics[i].type == kHistogram)
      ADD("%s: count=%llu sum=%llu max=%llu", metrics[i].name, (unsigned long long)metrics[i].count,
          (unsigned long long)metrics[i].sum, (unsigned long long)metrics[i].max);
    else
      ADD("%s: %lld", metrics[i].name, (long long)metrics[i].value);
  }
  pthread_mutex_unlock(&store_mu);
  qsort(lines, n, sizeof(*lines), cmp_line);
  for (size_t i = 0; i < n; i++) {
    buf_append(out, lines[i], strlen(lines[i]));
    buf_append(out, "\n", 1);
    free(lines[i]);
  }
  free(lines);
}
