/* The C functions the Go SDK calls (api.h), with the same argument checks,
 * threading rules and status codes as cgo.cc + golang_filter.cc. Exported
 * from the executable (-rdynamic): the .so resolves them at first call. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "capi_post.h"
#include "dso.h"
#include "host.h"
#include "log.h"
#include "stats.h"
#include "stream.h"

typedef struct {
  const char *p;
  ptrdiff_t n;
} gostr_t; /* GoString */

/* envoyGoFilterProcessStateHandlerWrapper */
static hfilter_t *lock_state(void *s, CAPIStatus *err) {
  proc_state_t *ps = s;
  if (!ps_is_processing_in_go(ps)) {
    *err = CAPINotInGo;
    return NULL;
  }
  hfilter_t *f = filter_lock(((host_req_t *)ps->base.req)->ctl);
  if (f == NULL) *err = CAPIFilterIsGone;
  return f;
}

#define WITH_STATE(s)                         \
  CAPIStatus rc_ = CAPIOK;                    \
  hfilter_t *f = lock_state((s), &rc_);       \
  if (f == NULL) return rc_;                  \
  proc_state_t *ps = (proc_state_t *)(s);     \
  (void)ps
#define RETURN(v)      \
  do {                 \
    CAPIStatus v_ = (v); \
    filter_release(f); \
    return v_;         \
  } while (0)

static int on_worker(hfilter_t *f) { return worker_is_thread_safe(f->w); }

/* ---- processState APIs ---- */

CAPIStatus envoyGoFilterHttpContinue(void *s, int status) {
  WITH_STATE(s);
  if (filter_has_destroyed(f)) RETURN(CAPIFilterIsDestroy);
  if (!on_worker(f)) atomic_fetch_add(&g_stats.async_continues, 1);
  /* always posted: running it inline would re-enter the state machine
   * before handle*GolangStatus consumed the returned status (envoy #44704) */
  pcall_t *pc = pcall_new(OP_CONTINUE, f, ps);
  pc->i1 = status;
  pcall_post(f, pc);
  RETURN(CAPIOK);
}

static CAPIStatus post_local_reply(hfilter_t *f, proc_state_t *ps, int code, const void *body, size_t blen,
                                   const gostr_t *hdrs, int nhdrs, const void *details, size_t dlen) {
  if (filter_has_destroyed(f)) return CAPIFilterIsDestroy;
  if (!ps_is_processing_in_go(ps)) return CAPINotInGo;
  pcall_t *pc = pcall_new(OP_LOCAL_REPLY, f, ps);
  pc->i1 = code;
  pc->a = pcall_dup(body, blen);
  pc->alen = blen;
  pc->b = pcall_dup(details, dlen);
  pc->blen = dlen;
  for (int i = 0; i + 1 < nhdrs; i += 2)
    hmap_add(&pc->hdrs, hdrs[i].p, (size_t)hdrs[i].n, hdrs[i + 1].p, (size_t)hdrs[i + 1].n);
  pcall_post(f, pc);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpSendLocalReply(void *s, int response_code, void *body_text_data, int body_text_len,
                                           void *headers, int headers_num, long long int grpc_status,
                                           void *details_data, int details_len) {
  (void)grpc_status; /* only used for gRPC requests, which the host does not proxy */
  WITH_STATE(s);
  RETURN(post_local_reply(f, ps, response_code, body_text_data, (size_t)body_text_len, headers, headers_num,
                          details_data, (size_t)details_len));
}

CAPIStatus envoyGoFilterHttpSendPanicReply(void *s, void *details_data, int details_len) {
  WITH_STATE(s);
  atomic_fetch_add(&g_stats.panic_error, 1);
  hlog(LOG_ERROR, "[go_plugin_http][%.*s] filter paniced with error details: %.*s",
       (int)f->req->base.plugin_name.len, f->req->base.plugin_name.data, details_len, (const char *)details_data);
  /* the details stay in the log: they are not leaked to the client */
  static const char kBody[] = "error happened in filter\r\n";
  RETURN(post_local_reply(f, ps, 500, kBody, sizeof(kBody) - 1, NULL, 0, "", 0));
}

CAPIStatus envoyGoFilterHttpAddData(void *s, void *data, int data_len, bool is_streaming) {
  WITH_STATE(s);
  if (ps_state(ps) == FS_PROCESSING_DATA) {
    hlog(LOG_ERROR, "golang filter calls addData when processing data is not supported, use BufferInstance.Append");
    RETURN(CAPIInvalidPhase);
  }
  if (filter_has_destroyed(f)) RETURN(CAPIFilterIsDestroy);
  if (on_worker(f)) {
    obuf_t b;
    obuf_init(&b);
    obuf_add(&b, data, (size_t)data_len);
    fm_add_data(f->st, ps_is_encoding(ps) ? DIR_ENCODE : DIR_DECODE, &b, is_streaming);
    obuf_free(&b);
    RETURN(CAPIOK);
  }
  pcall_t *pc = pcall_new(OP_ADD_DATA, f, ps);
  pc->a = pcall_dup(data, (size_t)data_len);
  pc->alen = (size_t)data_len;
  pc->i1 = is_streaming;
  pcall_post(f, pc);
  RETURN(CAPIYield);
}

CAPIStatus envoyGoFilterHttpInjectData(void *s, void *data, int data_len) {
  WITH_STATE(s);
  if (filter_has_destroyed(f)) RETURN(CAPIFilterIsDestroy);
  if (ps_state(ps) != FS_PROCESSING_DATA) {
    hlog(LOG_ERROR, "injectData is not supported when calling without processing data, use addData");
    RETURN(CAPIInvalidPhase);
  }
  if (on_worker(f)) {
    hlog(LOG_ERROR, "injectData is not supported when calling inside the callback context");
    RETURN(CAPIInvalidScene);
  }
  pcall_t *pc = pcall_new(OP_INJECT_DATA, f, ps);
  pc->a = pcall_dup(data, (size_t)data_len);
  pc->alen = (size_t)data_len;
  pcall_post(f, pc);
  RETURN(CAPIOK);
}

static CAPIStatus get_header(hfilter_t *f, proc_state_t *ps, const void *key, int klen, uint64_t *vd, int *vl) {
  pthread_mutex_lock(&f->mu);
  CAPIStatus rc = CAPIOK;
  if (filter_has_destroyed(f)) rc = CAPIFilterIsDestroy;
  else if (!ps_is_processing_in_go(ps)) rc = CAPINotInGo;
  else if (ps->headers == NULL) rc = CAPIInvalidPhase;
  else {
    const hentry_t *e = hmap_get(ps->headers, key, (size_t)klen);
    if (e != NULL) {
      /* a pointer into the map, as Envoy does: Go copies it right away */
      *vd = (uint64_t)(uintptr_t)e->value;
      *vl = (int)e->vlen;
    }
  }
  pthread_mutex_unlock(&f->mu);
  return rc;
}

CAPIStatus envoyGoFilterHttpGetHeader(void *s, void *key_data, int key_len, uint64_t *value_data, int *value_len) {
  WITH_STATE(s);
  RETURN(get_header(f, ps, key_data, key_len, value_data, value_len));
}

static void copy_map_to_go(const hmap_t *m, gostr_t *strs, char *buf) {
  size_t i = 0;
  for (size_t k = 0; k < m->n; k++) {
    const hentry_t *e = &m->e[k];
    strs[i].n = (ptrdiff_t)e->klen;
    strs[i].p = buf;
    memcpy(buf, e->key, e->klen);
    buf += e->klen;
    i++;
    strs[i].n = (ptrdiff_t)e->vlen;
    if (e->vlen > 0) { /* Go's buffer may end here: leave p untouched */
      strs[i].p = buf;
      memcpy(buf, e->value, e->vlen);
      buf += e->vlen;
    }
    i++;
  }
}

static CAPIStatus copy_map(hfilter_t *f, proc_state_t *ps, int trailers, void *strs, void *buf) {
  pthread_mutex_lock(&f->mu);
  CAPIStatus rc = CAPIOK;
  hmap_t *m = trailers ? ps->trailers : ps->headers;
  if (filter_has_destroyed(f)) rc = CAPIFilterIsDestroy;
  else if (!ps_is_processing_in_go(ps)) rc = CAPINotInGo;
  else if (m == NULL) rc = CAPIInvalidPhase;
  else copy_map_to_go(m, strs, buf);
  pthread_mutex_unlock(&f->mu);
  return rc;
}

CAPIStatus envoyGoFilterHttpCopyHeaders(void *s, void *strs, void *buf) {
  WITH_STATE(s);
  RETURN(copy_map(f, ps, 0, strs, buf));
}

CAPIStatus envoyGoFilterHttpCopyTrailers(void *s, void *strs, void *buf) {
  WITH_STATE(s);
  RETURN(copy_map(f, ps, 1, strs, buf));
}

static CAPIStatus set_map(hfilter_t *f, proc_state_t *ps, int trailers, const void *k, int kl, const void *v, int vl,
                          int act, int remove) {
  if (filter_has_destroyed(f)) return CAPIFilterIsDestroy;
  if (!ps_is_processing_in_go(ps)) return CAPINotInGo;
  hmap_t *m = trailers ? ps->trailers : ps->headers;
  if (m == NULL) return CAPIInvalidPhase;
  if (!remove && act != HeaderSet && act != HeaderAdd) {
    hlog(LOG_CRITICAL, "unknown header action: %d", act); /* Envoy: RELEASE_ASSERT */
    abort();
  }
  if (on_worker(f)) {
    if (remove) hmap_remove(m, k, (size_t)kl);
    else if (act == HeaderAdd) hmap_add(m, k, (size_t)kl, v, (size_t)vl);
    else hmap_set(m, k, (size_t)kl, v, (size_t)vl);
    return CAPIOK;
  }
  /* off-thread writes are posted: not visible to reads until they run */
  pcall_t *pc = pcall_new(remove ? OP_REMOVE_HEADER : OP_SET_HEADER, f, ps);
  pc->target = m;
  pc->a = pcall_dup(k, (size_t)kl);
  pc->alen = (size_t)kl;
  if (!remove) {
    pc->b = pcall_dup(v, (size_t)vl);
    pc->blen = (size_t)vl;
    pc->i1 = act;
  }
  pcall_post(f, pc);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpSetHeaderHelper(void *s, void *key_data, int key_len, void *value_data, int value_len,
                                            headerAction action) {
  WITH_STATE(s);
  RETURN(set_map(f, ps, 0, key_data, key_len, value_data, value_len, (int)action, 0));
}

CAPIStatus envoyGoFilterHttpRemoveHeader(void *s, void *key_data, int key_len) {
  WITH_STATE(s);
  RETURN(set_map(f, ps, 0, key_data, key_len, NULL, 0, 0, 1));
}

CAPIStatus envoyGoFilterHttpSetTrailer(void *s, void *key_data, int key_len, void *value, int value_len,
                                       headerAction action) {
  WITH_STATE(s);
  RETURN(set_map(f, ps, 1, key_data, key_len, value, value_len, (int)action, 0));
}

CAPIStatus envoyGoFilterHttpRemoveTrailer(void *s, void *key_data, int key_len) {
  WITH_STATE(s);
  RETURN(set_map(f, ps, 1, key_data, key_len, NULL, 0, 0, 1));
}

static CAPIStatus check_buffer(hfilter_t *f, proc_state_t *ps, uint64_t id) {
  if (filter_has_destroyed(f)) return CAPIFilterIsDestroy;
  if (!ps_is_processing_in_go(ps)) return CAPINotInGo;
  if (!buflist_check_existing(&ps->do_data_list, (obuf_t *)(uintptr_t)id)) return CAPIInvalidPhase;
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpGetBuffer(void *s, uint64_t buffer, void *value) {
  WITH_STATE(s);
  CAPIStatus rc = check_buffer(f, ps, buffer);
  if (rc == CAPIOK) {
    obuf_copy_out((obuf_t *)(uintptr_t)buffer, value);
  }
  RETURN(rc);
}

CAPIStatus envoyGoFilterHttpDrainBuffer(void *s, uint64_t buffer, uint64_t length) {
  WITH_STATE(s);
  CAPIStatus rc = check_buffer(f, ps, buffer);
  if (rc == CAPIOK) obuf_drain((obuf_t *)(uintptr_t)buffer, (size_t)length);
  RETURN(rc);
}

CAPIStatus envoyGoFilterHttpSetBufferHelper(void *s, uint64_t buffer, void *data, int length, bufferAction action) {
  WITH_STATE(s);
  CAPIStatus rc = check_buffer(f, ps, buffer);
  if (rc == CAPIOK) {
    /* Filter::setBufferHelper (golang_filter.cc:857-866) */
    obuf_t *b = (obuf_t *)(uintptr_t)buffer;
    if (action == Set) {
      obuf_drain(b, b->len);
      obuf_add(b, data, (size_t)length);
    } else if (action == Prepend) {
      obuf_prepend(b, data, (size_t)length);
    } else {
      obuf_add(b, data, (size_t)length);
    }
  }
  RETURN(rc);
}

/* Http::Utility::parseAuthority(host).is_ip_address_ */
static int authority_is_ip(const char *h, size_t n) {
  char tmp[80];
  if (n == 0 || n >= sizeof(tmp)) return 0;
  memcpy(tmp, h, n);
  tmp[n] = 0;
  struct in6_addr a6;
  struct in_addr a4;
  if (tmp[0] == '[') {
    char *rb = strchr(tmp, ']');
    if (rb == NULL || (rb[1] != 0 && rb[1] != ':')) return 0;
    *rb = 0;
    return inet_pton(AF_INET6, tmp + 1, &a6) == 1;
  }
  if (inet_pton(AF_INET6, tmp, &a6) == 1) return 1;
  char *colon = strrchr(tmp, ':');
  if (colon) *colon = 0;
  return inet_pton(AF_INET, tmp, &a4) == 1;
}

CAPIStatus envoyGoFilterHttpSetUpstreamOverrideHost(void *s, void *host_data, int host_len, bool strict) {
  WITH_STATE(s);
  if (filter_has_destroyed(f)) RETURN(CAPIFilterIsDestroy);
  if (!ps_is_processing_in_go(ps)) RETURN(CAPINotInGo);
  if (ps_is_encoding(ps)) RETURN(CAPIInvalidPhase);
  if (!authority_is_ip(host_data, (size_t)host_len)) RETURN(CAPIInvalidIPAddress);
  atomic_fetch_add(&g_stats.upstream_override_host, 1);
  if (on_worker(f)) {
    snprintf(f->st->override_host, sizeof(f->st->override_host), "%.*s", host_len, (const char *)host_data);
    f->st->override_strict = strict;
    RETURN(CAPIOK);
  }
  /* posted from a Go thread: strict is forced off (golang_filter.cc setUpstreamOverrideHost) */
  pcall_t *pc = pcall_new(OP_OVERRIDE_HOST, f, ps);
  pc->a = pcall_dup(host_data, (size_t)host_len);
  pcall_post(f, pc);
  RETURN(CAPIOK);
}
