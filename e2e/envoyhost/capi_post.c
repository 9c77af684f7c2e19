#include "capi_post.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dso.h"
#include "host.h"
#include "log.h"
#include "stream.h"

char *pcall_dup(const void *p, size_t n) {
  char *s = malloc(n + 1);
  if (s == NULL) abort();
  if (n) memcpy(s, p, n);
  s[n] = 0;
  return s;
}

pcall_t *pcall_new(int op, hfilter_t *f, proc_state_t *s) {
  pcall_t *pc = calloc(1, sizeof(*pc));
  if (pc == NULL) abort();
  pc->op = op;
  pc->s = s;
  pc->req = f->req;
  pc->ctl = f->ctl;
  pthread_mutex_lock(&f->ctl->mu);
  f->ctl->weak++;
  pthread_mutex_unlock(&f->ctl->mu);
  return pc;
}

static void pcall_free(pcall_t *pc) {
  free(pc->a);
  free(pc->b);
  free(pc->c);
  hmap_free(&pc->hdrs);
  if (pc->ctl) wctl_weak_release(pc->ctl);
  free(pc);
}

static void run_op(hfilter_t *f, pcall_t *pc) {
  stream_t *st = f->st;
  switch (pc->op) {
  case OP_CONTINUE:
    filter_continue_status_internal(f, pc->s, pc->i1);
    break;
  case OP_LOCAL_REPLY:
    filter_send_local_reply_internal(f, pc->s, pc->i1, pc->a, pc->alen, &pc->hdrs, pc->b);
    break;
  case OP_SET_HEADER:
    if (pc->i1 == HeaderAdd) hmap_add(pc->target, pc->a, pc->alen, pc->b, pc->blen);
    else hmap_set(pc->target, pc->a, pc->alen, pc->b, pc->blen);
    break;
  case OP_REMOVE_HEADER:
    hmap_remove(pc->target, pc->a, pc->alen);
    break;
  case OP_ADD_DATA: {
    obuf_t b;
    obuf_init(&b);
    obuf_add(&b, pc->a, pc->alen);
    fm_add_data(st, ps_is_encoding(pc->s) ? DIR_ENCODE : DIR_DECODE, &b, pc->i1);
    obuf_free(&b);
    break;
  }
  case OP_INJECT_DATA: {
    obuf_t b;
    obuf_init(&b);
    obuf_add(&b, pc->a, pc->alen);
    fm_inject_data(st, ps_is_encoding(pc->s) ? DIR_ENCODE : DIR_DECODE, &b, 0);
    obuf_free(&b);
    break;
  }
  case OP_OVERRIDE_HOST:
    snprintf(st->override_host, sizeof(st->override_host), "%s", pc->a);
    st->override_strict = 0;
    break;
  case OP_CLEAR_ROUTE_CACHE:
    fm_clear_route_cache(st);
    if (pc->i1) hcm_route(st); /* refresh: re-resolve now */
    break;
  case OP_SET_METADATA:
    md_set(&st->md, pc->a, pc->b, pc->c, pc->clen);
    atomic_fetch_add(&g_stats.dynamic_metadata_set, 1);
    break;
  case OP_GET_METADATA:
    capi_populate_metadata(f, pc->a, pc->out_data, pc->out_len);
    g_dso.sema_dec(&f->req->base);
    break;
  case OP_SET_FILTER_STATE:
    md_set(&st->filter_state, "", pc->a, pc->b, pc->blen);
    break;
  case OP_GET_FILTER_STATE:
    capi_populate_filter_state(f, pc->a, pc->out_data, pc->out_len);
    g_dso.sema_dec(&f->req->base);
    break;
  case OP_GET_PROPERTY:
    *pc->out_rc = capi_property(f, pc->a, pc->alen, pc->out_data, pc->out_len);
    g_dso.sema_dec(&f->req->base);
    break;
  case OP_GET_SECRET:
    *pc->out_len = -1; /* the host configures no generic_secrets */
    g_dso.sema_dec(&f->req->base);
    break;
  }
}

static void run_pcall(void *arg) {
  pcall_t *pc = arg;
  if (pc->op == OP_FREE_REQUEST) {
    host_req_free(pc->req); /* drops the request's own weak reference */
    free(pc);
    return;
  }
  hfilter_t *f = filter_lock(pc->ctl);
  if (f != NULL && !filter_has_destroyed(f)) run_op(f, pc);
  else hlog(LOG_DEBUG, "golang filter has gone or destroyed, dropping posted op %d", pc->op);
  if (f != NULL) filter_release(f);
  pcall_free(pc);
}

void pcall_post(hfilter_t *f, pcall_t *pc) { worker_post(f->w, run_pcall, pc); }

void free_request_later(host_req_t *r) {
  /* Envoy: dispatcher.deferredDelete on the worker that owns the request */
  pcall_t *pc = calloc(1, sizeof(*pc));
  if (pc == NULL) abort();
  pc->op = OP_FREE_REQUEST;
  pc->req = r;
  worker_post(r->w, run_pcall, pc);
}
