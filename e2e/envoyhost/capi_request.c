/* Request-, config- and process-level C API (the httpRequest* / config
 * pointer half of api.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "capi_post.h"
#include "dso.h"
#include "fconfig.h"
#include "host.h"
#include "log.h"
#include "stats.h"
#include "stream.h"

/* EnvoyValue ids (golang_filter.h) */
enum {
  EV_ROUTE_NAME = 1, EV_FILTER_CHAIN_NAME, EV_PROTOCOL, EV_RESPONSE_CODE, EV_RESPONSE_CODE_DETAILS, EV_ATTEMPT_COUNT,
  EV_DOWNSTREAM_LOCAL_ADDRESS, EV_DOWNSTREAM_REMOTE_ADDRESS, EV_UPSTREAM_LOCAL_ADDRESS, EV_UPSTREAM_REMOTE_ADDRESS,
  EV_UPSTREAM_CLUSTER_NAME, EV_VIRTUAL_CLUSTER_NAME,
  EV_SSL_FIRST = 100, EV_SSL_CONNECTION_EXISTS = 100, EV_SSL_LAST = 119,
};

static hfilter_t *lock_request(void *r, CAPIStatus *err) {
  hfilter_t *f = filter_lock(((host_req_t *)r)->ctl);
  if (f == NULL) {
    *err = CAPIFilterIsGone;
    return NULL;
  }
  if (!filter_is_processing_in_go(f)) {
    filter_release(f);
    *err = CAPINotInGo;
    return NULL;
  }
  return f;
}

#define WITH_REQUEST(r)                   \
  CAPIStatus rc_ = CAPIOK;                \
  hfilter_t *f = lock_request((r), &rc_); \
  if (f == NULL) return rc_
#define RETURN(v)        \
  do {                   \
    CAPIStatus v_ = (v); \
    filter_release(f);   \
    return v_;           \
  } while (0)

static int on_worker(hfilter_t *f) { return worker_is_thread_safe(f->w); }

static void reply_str(hfilter_t *f, const char *s, size_t n, uint64_t *data, int *len) {
  buf_t *v = &f->req->str_value;
  v->len = 0;
  buf_append(v, s, n);
  *data = (uint64_t)(uintptr_t)(v->data ? v->data : "");
  *len = (int)v->len;
}

/* Filter::clearRouteCache: the HCM drops its cached route and the router
 * matches again with the headers as they are then; refresh re-resolves
 * at once (conn_manager_impl.cc:2468-2477, router.cc:508). */
CAPIStatus envoyGoFilterHttpClearRouteCache(void *r, bool refresh) {
  WITH_REQUEST(r);
  if (filter_has_destroyed(f)) RETURN(CAPIFilterIsDestroy);
  if (on_worker(f)) {
    fm_clear_route_cache(f->st);
    if (refresh) hcm_route(f->st);
    RETURN(CAPIOK);
  }
  pcall_t *pc = pcall_new(OP_CLEAR_ROUTE_CACHE, f, NULL);
  pc->i1 = refresh;
  pcall_post(f, pc);
  RETURN(CAPIOK);
}

CAPIStatus envoyGoFilterHttpGetStringValue(void *r, int id, uint64_t *value_data, int *value_len) {
  WITH_REQUEST(r);
  pthread_mutex_lock(&f->mu); /* serialises strValue and fences onDestroy */
  CAPIStatus rc = CAPIOK;
  stream_t *st = f->st;
  char tmp[96];
  if (filter_has_destroyed(f)) {
    rc = CAPIFilterIsDestroy;
  } else if (id >= EV_SSL_FIRST && id <= EV_SSL_LAST) {
    rc = CAPIValueNotFound; /* plain-text listener: no SSL connection */
  } else {
    switch (id) {
    case EV_ROUTE_NAME: {
      const route_t *rt = st->route_cached ? st->route : NULL;
      if (rt) reply_str(f, rt->name, strlen(rt->name), value_data, value_len);
      else reply_str(f, "", 0, value_data, value_len);
      break;
    }
    case EV_FILTER_CHAIN_NAME: reply_str(f, "", 0, value_data, value_len); break;
    case EV_RESPONSE_CODE_DETAILS:
      if (st->details[0] == 0) rc = CAPIValueNotFound;
      else reply_str(f, st->details[0] ? st->details : "via_upstream", strlen(st->details[0] ? st->details : "via_upstream"), value_data, value_len);
      break;
    case EV_DOWNSTREAM_LOCAL_ADDRESS:
      reply_str(f, st->local, strlen(st->local), value_data, value_len);
      break;
    case EV_DOWNSTREAM_REMOTE_ADDRESS: reply_str(f, st->peer, strlen(st->peer), value_data, value_len); break;
    case EV_UPSTREAM_LOCAL_ADDRESS: rc = CAPIValueNotFound; break; /* evhttp does not expose it */
    case EV_UPSTREAM_REMOTE_ADDRESS:
      if (st->upstream_host[0]) reply_str(f, st->upstream_host, strlen(st->upstream_host), value_data, value_len);
      else rc = CAPIValueNotFound;
      break;
    case EV_UPSTREAM_CLUSTER_NAME:
      if (st->cluster_name[0]) reply_str(f, st->cluster_name, strlen(st->cluster_name), value_data, value_len);
      else rc = CAPIValueNotFound;
      break;
    case EV_VIRTUAL_CLUSTER_NAME: rc = CAPIValueNotFound; break;
    default:
      snprintf(tmp, sizeof(tmp), "invalid string value id: %d", id);
      hlog(LOG_CRITICAL, "%s", tmp); /* Envoy: RELEASE_ASSERT */
      abort();
    }
  }
  pthread_mutex_unlock(&f->mu);
  RETURN(rc);
}

CAPIStatus envoyGoFilterHttpGetIntegerValue(void *r, int id, uint64_t *value) {
  WITH_REQUEST(r);
  pthread_mutex_lock(&f->mu);
  CAPIStatus rc = CAPIOK;
  stream_t *st = f->st;
  if (filter_has_destroyed(f)) rc = CAPIFilterIsDestroy;
  else if (id == EV_PROTOCOL) *value = st->minor == 0 ? 0 : 1; /* Http::Protocol::Http10 / Http11 */
  else if (id == EV_RESPONSE_CODE) {
    if (st->resp_code) *value = (uint64_t)st->resp_code;
    else rc = CAPIValueNotFound;
  } else if (id == EV_ATTEMPT_COUNT) {
    if (st->attempt_count) *value = (uint64_t)st->attempt_count;
    else rc = CAPIValueNotFound;
  } else if (id == EV_SSL_CONNECTION_EXISTS) *value = 0;
  else if (id > EV_SSL_CONNECTION_EXISTS && id <= EV_SSL_LAST) rc = CAPIValueNotFound;
  else {
    hlog(LOG_CRITICAL, "invalid integer value id: %d", id);
    abort();
  }
  pthread_mutex_unlock(&f->mu);
  RETURN(rc);
}

void capi_populate_metadata(hfilter_t *f, const char *ns, uint64_t *data, int *len) {
  buf_t *v = &f->req->str_value;
  if (md_serialize_ns(&f->st->md, ns, v)) {
    *data = (uint64_t)(uintptr_t)(v->data ? v->data : "");
    *len = (int)v->len;
  }
}

CAPIStatus envoyGoFilterHttpGetDynamicMetadata(void *r, void *name_data, int name_len, uint64_t *value_data,
                                               int *value_len) {
  WITH_REQUEST(r);
  pthread_mutex_lock(&f->mu);
  CAPIStatus rc = CAPIOK;
  char *ns = pcall_dup(name_data, (size_t)name_len);
  if (filter_has_destroyed(f)) {
    rc = CAPIFilterIsDestroy;
  } else if (!on_worker(f)) {
    /* the goroutine waits in Go until the worker calls envoyGoRequestSemaDec */
    pcall_t *pc = pcall_new(OP_GET_METADATA, f, NULL);
    pc->a = ns;
    ns = NULL;
    pc->out_data = value_data;
    pc->out_len = value_len;
    pcall_post(f, pc);
    rc = CAPIYield;
  } else {
    capi_populate_metadata(f, ns, value_data, value_len);
  }
  free(ns);
  pthread_mutex_unlock(&f->mu);
  RETURN(rc);
}

CAPIStatus envoyGoFilterHttpSetDynamicMetadata(void *r, void *name_data, int name_len, void *key_data, int key_len,
                                               void *buf_data, int buf_len) {
  WITH_REQUEST(r);
  if (filter_has_destroyed(f)) RETURN(CAPIFilterIsDestroy);
  char *ns = pcall_dup(name_data, (size_t)name_len), *key = pcall_dup(key_data, (size_t)key_len);
  if (on_worker(f)) {
    md_set(&f->st->md, ns, key, buf_data, (size_t)buf_len);
    atomic_fetch_add(&g_stats.dynamic_metadata_set, 1);
    free(ns);
    free(key);
    RETURN(CAPIOK);
  }
  pcall_t *pc = pcall_new(OP_SET_METADATA, f, NULL);
  pc->a = ns;
  pc->b = key;
  pc->c = pcall_dup(buf_data, (size_t)buf_len);
  pc->clen = (size_t)buf_len;
  pcall_post(f, pc);
  RETURN(CAPIOK);
}

void envoyGoFilterHttpFinalize(void *r, int reason) {
  (void)reason;
  host_req_t *req = r;
  atomic_fetch_add(&g_stats.finalized_requests, 1);
  hfilter_t *f = filter_lock(req->ctl);
  if (f != NULL) {
    free_request_later(req); /* deferred delete on the owning worker */
    filter_release(f);
  } else {
    host_req_free(req);
  }
}

CAPIStatus envoyGoFilterHttpSetStringFilterState(void *r, void *key_data, int key_len, void *value_data,
                                                 int value_len, int state_type, int life_span, int stream_sharing) {
  (void)state_type, (void)life_span, (void)stream_sharing; /* one stream, no upstream sharing to model */
  WITH_REQUEST(r);
  if (filter_has_destroyed(f)) RETURN(CAPIFilterIsDestroy);
  char *key = pcall_dup(key_data, (size_t)key_len);
  if (on_worker(f)) {
    md_set(&f->st->filter_state, "", key, value_data, (size_t)value_len);
    free(key);
    RETURN(CAPIOK);
  }
  pcall_t *pc = pcall_new(OP_SET_FILTER_STATE, f, NULL);
  pc->a = key;
  pc->b = pcall_dup(value_data, (size_t)value_len);
  pc->blen = (size_t)value_len;
  pcall_post(f, pc);
  RETURN(CAPIOK);
}

void capi_populate_filter_state(hfilter_t *f, const char *key, uint64_t *data, int *len) {
  const buf_t *v = md_get(&f->st->filter_state, "", key);
  if (v != NULL) reply_str(f, v->data ? v->data : "", v->len, data, len);
}

CAPIStatus envoyGoFilterHttpGetStringFilterState(void *r, void *key_data, int key_len, uint64_t *value_data,
                                                 int *value_len) {
  WITH_REQUEST(r);
  pthread_mutex_lock(&f->mu);
  CAPIStatus rc = CAPIOK;
  char *key = pcall_dup(key_data, (size_t)key_len);
  if (filter_has_destroyed(f)) {
    rc = CAPIFilterIsDestroy;
  } else if (on_worker(f)) {
    capi_populate_filter_state(f, key, value_data, value_len);
  } else {
    pcall_t *pc = pcall_new(OP_GET_FILTER_STATE, f, NULL);
    pc->a = key;
    key = NULL;
    pc->out_data = value_data;
    pc->out_len = value_len;
    pcall_post(f, pc);
    rc = CAPIYield;
  }
  free(key);
  pthread_mutex_unlock(&f->mu);
  RETURN(rc);
}

static int prefix(const char *path, size_t len, const char *p, const char **rest) {
  size_t n = strlen(p);
  if (len < n || memcmp(path, p, n) != 0) return 0;
  *rest = path + n;
  return 1;
}

/* A subset of Envoy's CEL attributes, the string- and int-valued ones a
 * routing filter reads; maps (request.headers) serialize as Envoy does not. */
int capi_property(hfilter_t *f, const char *path, size_t len, uint64_t *data, int *out_len) {
  stream_t *st = f->st;
  char key[256], tmp[64];
  const char *rest, *v = NULL;
  if (len >= sizeof(key)) return CAPIValueNotFound;
  memcpy(key, path, len);
  key[len] = 0;
  if (prefix(key, len, "request.headers.", &rest)) v = hmap_get_str(&st->req_headers, rest);
  else if (prefix(key, len, "response.headers.", &rest)) v = st->resp_started ? hmap_get_str(&st->resp_headers, rest) : NULL;
  else if (strcmp(key, "request.headers") == 0 || strcmp(key, "response.headers") == 0) return CAPISerializationFailure;
  else if (strcmp(key, "request.path") == 0) v = hmap_get_str(&st->req_headers, ":path");
  else if (strcmp(key, "request.url_path") == 0) {
    const char *p = hmap_get_str(&st->req_headers, ":path");
    if (p == NULL) return CAPIValueNotFound;
    reply_str(f, p, strcspn(p, "?"), data, out_len);
    return CAPIOK;
  } else if (strcmp(key, "request.host") == 0) v = hmap_get_str(&st->req_headers, ":authority");
  else if (strcmp(key, "request.scheme") == 0) v = hmap_get_str(&st->req_headers, ":scheme");
  else if (strcmp(key, "request.method") == 0) v = hmap_get_str(&st->req_headers, ":method");
  else if (strcmp(key, "request.id") == 0) v = hmap_get_str(&st->req_headers, "x-request-id");
  else if (strcmp(key, "request.useragent") == 0) v = hmap_get_str(&st->req_headers, "user-agent");
  else if (strcmp(key, "request.protocol") == 0) v = st->minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
  else if (strcmp(key, "source.address") == 0) v = st->peer;
  else if (strcmp(key, "destination.address") == 0) v = st->local;
  else if (strcmp(key, "upstream.address") == 0) v = st->upstream_host[0] ? st->upstream_host : NULL;
  else if (strcmp(key, "xds.cluster_name") == 0) v = st->cluster_name[0] ? st->cluster_name : NULL;
  else if (strcmp(key, "xds.route_name") == 0) v = st->route_cached && st->route ? st->route->name : NULL;
  else if (strcmp(key, "response.code") == 0 && st->resp_code) {
    snprintf(tmp, sizeof(tmp), "%d", st->resp_code);
    v = tmp;
  } else if (strcmp(key, "response.code_details") == 0 && st->details[0]) v = st->details;
  else if (strcmp(key, "request.size") == 0) {
    snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)st->bytes_received);
    v = tmp;
  }
  if (v == NULL) return CAPIValueNotFound;
  reply_str(f, v, strlen(v), data, out_len);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpGetStringProperty(void *r, void *key_data, int key_len, uint64_t *value_data,
                                              int *value_len, int *rc_out) {
  WITH_REQUEST(r);
  pthread_mutex_lock(&f->mu);
  CAPIStatus rc;
  if (filter_has_destroyed(f)) {
    rc = CAPIFilterIsDestroy;
  } else if (on_worker(f)) {
    rc = capi_property(f, key_data, (size_t)key_len, value_data, value_len);
  } else {
    pcall_t *pc = pcall_new(OP_GET_PROPERTY, f, NULL);
    pc->a = pcall_dup(key_data, (size_t)key_len);
    pc->alen = (size_t)key_len;
    pc->out_data = value_data;
    pc->out_len = value_len;
    pc->out_rc = rc_out;
    pcall_post(f, pc);
    rc = CAPIYield;
  }
  pthread_mutex_unlock(&f->mu);
  RETURN(rc);
}

CAPIStatus envoyGoFilterHttpGetStringSecret(void *r, void *key_data, int key_len, uint64_t *value_data,
                                            int *value_len) {
  (void)key_data, (void)key_len, (void)value_data;
  WITH_REQUEST(r);
  pthread_mutex_lock(&f->mu);
  CAPIStatus rc = CAPIOK;
  if (filter_has_destroyed(f)) {
    rc = CAPIFilterIsDestroy;
  } else if (on_worker(f)) {
    *value_len = -1; /* no generic_secrets configured: "not found" */
  } else {
    pcall_t *pc = pcall_new(OP_GET_SECRET, f, NULL);
    pc->out_len = value_len;
    pcall_post(f, pc);
    rc = CAPIYield;
  }
  pthread_mutex_unlock(&f->mu);
  RETURN(rc);
}

CAPIStatus envoyGoFilterHttpSetDrainConnectionUponCompletion(void *r) {
  WITH_REQUEST(r);
  pthread_mutex_lock(&f->mu);
  CAPIStatus rc = CAPIOK;
  if (filter_has_destroyed(f)) rc = CAPIFilterIsDestroy;
  else f->st->drain_on_completion = 1;
  pthread_mutex_unlock(&f->mu);
  RETURN(rc);
}

/* ---- process level ---- */

void envoyGoFilterLog(uint32_t level, void *message_data, int message_len) {
  if ((int)level < atomic_load(&g_log_level) || level >= LOG_OFF) return;
  fprintf(stderr, "[golang][%u] %.*s\n", level, message_len, (const char *)message_data);
}

uint32_t envoyGoFilterLogLevel(void) { return (uint32_t)atomic_load(&g_log_level); }

/* ---- config level (httpConfigInternal) ---- */

void envoyGoConfigHttpFinalize(void *c) {
  host_http_config_t *hc = c;
  metric_ctl_unref(hc->ctl);
  free(hc);
}

/* FilterConfig::defineMetric & co. through the weak_ptr in httpConfigInternal:
 * CAPIFilterIsGone once the FilterConfig was destroyed */
#define CTL(c) (((host_http_config_t *)(c))->ctl)

CAPIStatus envoyGoFilterHttpDefineMetric(void *c, uint32_t metric_type, void *name_data, int name_len,
                                         uint32_t *metric_id) {
  return metrics_define(CTL(c), metric_type, name_data, (size_t)name_len, metric_id);
}

CAPIStatus envoyGoFilterHttpIncrementMetric(void *c, uint32_t metric_id, int64_t offset) {
  return metrics_increment(CTL(c), metric_id, offset);
}

CAPIStatus envoyGoFilterHttpGetMetric(void *c, uint32_t metric_id, uint64_t *value) {
  return metrics_get(CTL(c), metric_id, value);
}

CAPIStatus envoyGoFilterHttpRecordMetric(void *c, uint32_t metric_id, uint64_t value) {
  return metrics_record(CTL(c), metric_id, value);
}
