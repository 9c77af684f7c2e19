#include "stats.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filter.h"
#include "host.h"

atomic_int g_filter_config_alive;

enum { kCounter = 0, kGauge = 1, kHistogram = 2, kTypeMask = 0x3, kIdIncrement = 0x4 };

typedef struct metric {
  char *name;
  int type;
  int64_t value; /* counter/gauge */
  uint64_t count, sum, max; /* histogram */
} metric_t;

typedef struct id_entry {
  uint32_t id;
  size_t metric;
} id_entry_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* FilterConfig::mutex_ */
static metric_t *metrics;
static size_t nmetrics, capmetrics;
static id_entry_t *ids;
static size_t nids, capids;
static uint32_t next_id[3] = {kCounter, kGauge, kHistogram};

static metric_t *by_id(uint32_t id) {
  for (size_t i = 0; i < nids; i++)
    if (ids[i].id == id) return &metrics[ids[i].metric];
  return NULL;
}

CAPIStatus metrics_define(uint32_t type, const char *name, size_t len, uint32_t *id) {
  if (type > kHistogram) return CAPIValueNotFound;
  pthread_mutex_lock(&mu);
  /* the stats scope returns the existing stat for a known name; ids stay unique */
  size_t m;
  for (m = 0; m < nmetrics; m++)
    if (metrics[m].type == (int)type && strlen(metrics[m].name) == len && memcmp(metrics[m].name, name, len) == 0) break;
  if (m == nmetrics) {
    if (nmetrics == capmetrics) {
      capmetrics = capmetrics ? capmetrics * 2 : 16;
      metrics = realloc(metrics, capmetrics * sizeof(*metrics));
      if (metrics == NULL) abort();
    }
    memset(&metrics[m], 0, sizeof(metrics[m]));
    metrics[m].name = strndup(name, len);
    metrics[m].type = (int)type;
    nmetrics++;
  }
  if (nids == capids) {
    capids = capids ? capids * 2 : 16;
    ids = realloc(ids, capids * sizeof(*ids));
    if (ids == NULL) abort();
  }
  next_id[type] += kIdIncrement;
  ids[nids].id = next_id[type];
  ids[nids].metric = m;
  nids++;
  *id = next_id[type];
  pthread_mutex_unlock(&mu);
  return CAPIOK;
}

CAPIStatus metrics_increment(uint32_t id, int64_t offset) {
  pthread_mutex_lock(&mu);
  metric_t *m = by_id(id);
  if (m != NULL) {
    if (m->type == kCounter && offset > 0) m->value += offset;
    else if (m->type == kGauge) m->value += offset;
  }
  pthread_mutex_unlock(&mu);
  return CAPIOK;
}

CAPIStatus metrics_get(uint32_t id, uint64_t *value) {
  pthread_mutex_lock(&mu);
  metric_t *m = by_id(id);
  if (m != NULL && m->type != kHistogram) *value = (uint64_t)m->value;
  pthread_mutex_unlock(&mu);
  return CAPIOK;
}

CAPIStatus metrics_record(uint32_t id, uint64_t value) {
  pthread_mutex_lock(&mu);
  metric_t *m = by_id(id);
  if (m != NULL) {
    if (m->type == kCounter) m->value += (int64_t)value;
    else if (m->type == kGauge) m->value = (int64_t)value;
    else {
      m->count++;
      m->sum += value;
      if (value > m->max) m->max = value;
    }
  }
  pthread_mutex_unlock(&mu);
  return CAPIOK;
}

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
#define ADD(...)                                                   \
  do {                                                             \
    if (n == cap) {                                                \
      cap = cap ? cap * 2 : 64;                                    \
      lines = realloc(lines, cap * sizeof(*lines));                \
      if (lines == NULL) abort();                                  \
    }                                                              \
    if (asprintf(&lines[n], __VA_ARGS__) < 0) abort();             \
    n++;                                                           \
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
  ADD("envoyhost.live_requests: %ld", atomic_load(&g_live_requests));
  ADD("envoyhost.rss_bytes: %ld", rss_bytes());
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < nmetrics; i++) {
    if (metrics[i].type == kHistogram)
      ADD("%s: count=%llu sum=%llu max=%llu", metrics[i].name, (unsigned long long)metrics[i].count,
          (unsigned long long)metrics[i].sum, (unsigned long long)metrics[i].max);
    else
      ADD("%s: %lld", metrics[i].name, (long long)metrics[i].value);
  }
  pthread_mutex_unlock(&mu);
  qsort(lines, n, sizeof(*lines), cmp_line);
  for (size_t i = 0; i < n; i++) {
    buf_append(out, lines[i], strlen(lines[i]));
    buf_append(out, "\n", 1);
    free(lines[i]);
  }
  free(lines);
}
