#include "filter.h"

#include <stdlib.h>
#include <string.h>

#include "dso.h"
#include "log.h"
#include "stream.h"

atomic_long g_live_requests;

static const char *const kStateNames[] = {"WaitingHeader",  "ProcessingHeader", "WaitingData",       "WaitingAllData",
                                          "ProcessingData", "WaitingTrailer",   "ProcessingTrailer", "Done"};

static void set_state(proc_state_t *s, fstate_t st) { s->base.state = (int)st; }

/* ---- lifetime: filter (shared/weak), request (Go-owned) ---- */

hfilter_t *filter_new(struct stream *st, worker_t *w, const char *plugin_name, size_t plugin_name_len,
                      uint64_t config_id) {
  hfilter_t *f = calloc(1, sizeof(*f));
  host_req_t *r = calloc(1, sizeof(*r));
  wctl_t *c = calloc(1, sizeof(*c));
  if (f == NULL || r == NULL || c == NULL) abort();
  pthread_mutex_init(&c->mu, NULL);
  c->obj = f;
  c->strong = 1; /* held by the stream */
  c->weak = 1;   /* held by the request */
  pthread_mutex_init(&f->mu, NULL);
  f->ctl = c;
  f->req = r;
  f->w = w;
  f->st = st;
  f->config_id = config_id;
  r->base.plugin_name.data = plugin_name;
  r->base.plugin_name.len = plugin_name_len;
  r->base.configId = 0; /* set by initRequest on the first call into Go */
  r->base.worker_id = w->id;
  atomic_store(&r->base.is_golang_processing_log, 0);
  r->dec.base.req = &r->base;
  r->dec.base.is_encoding = 0;
  r->enc.base.req = &r->base;
  r->enc.base.is_encoding = 1;
  set_state(&r->dec, FS_WAITING_HEADER);
  set_state(&r->enc, FS_WAITING_HEADER);
  r->ctl = c;
  r->w = w;
  atomic_fetch_add(&g_live_requests, 1);
  return f;
}

hfilter_t *filter_lock(wctl_t *c) {
  hfilter_t *f = NULL;
  pthread_mutex_lock(&c->mu);
  if (c->strong > 0) {
    c->strong++;
    f = c->obj;
  }
  pthread_mutex_unlock(&c->mu);
  return f;
}

void filter_release(hfilter_t *f) {
  wctl_t *c = f->ctl;
  pthread_mutex_lock(&c->mu);
  int last = --c->strong == 0;
  if (last) c->obj = NULL;
  int free_ctl = last && c->weak == 0;
  pthread_mutex_unlock(&c->mu);
  if (!last) return;
  pthread_mutex_destroy(&f->mu);
  free(f);
  if (free_ctl) {
    pthread_mutex_destroy(&c->mu);
    free(c);
  }
}

void wctl_weak_release(wctl_t *c) {
  pthread_mutex_lock(&c->mu);
  int free_ctl = --c->weak == 0 && c->strong == 0;
  pthread_mutex_unlock(&c->mu);
  if (free_ctl) {
    pthread_mutex_destroy(&c->mu);
    free(c);
  }
}

static void proc_state_free(proc_state_t *s) {
  buflist_free(&s->do_data_list);
  if (s->data_buffer) {
    obuf_free(s->data_buffer);
    free(s->data_buffer);
  }
}

void host_req_free(host_req_t *r) {
  proc_state_free(&r->dec);
  proc_state_free(&r->enc);
  buf_free(&r->str_value);
  wctl_t *c = r->ctl;
  free(r);
  wctl_weak_release(c);
  atomic_fetch_sub(&g_live_requests, 1);
}

int filter_has_destroyed(hfilter_t *f) { return atomic_load_explicit(&f->has_destroyed, memory_order_acquire); }

int ps_is_processing_in_go(const proc_state_t *s) {
  fstate_t st = ps_state(s);
  return st == FS_PROCESSING_HEADER || st == FS_PROCESSING_DATA || st == FS_PROCESSING_TRAILER ||
         atomic_load(&s->base.req->is_golang_processing_log);
}

int filter_is_processing_in_go(hfilter_t *f) {
  return ps_is_processing_in_go(&f->req->dec) || ps_is_processing_in_go(&f->req->enc);
}

proc_state_t *filter_state(hfilter_t *f, int dir) { return dir == DIR_DECODE ? &f->req->dec : &f->req->enc; }

static int dir_of(const proc_state_t *s) { return ps_is_encoding(s) ? DIR_ENCODE : DIR_DECODE; }

static void init_request(hfilter_t *f) {
  /* initRequest: the merged config id (filter-level merged with the
   * route's per-route configs), fixed on the first call into Go */
  if (f->req->base.configId == 0) f->req->base.configId = f->config_id;
}

/* ---- watermark buffer (DecodingProcessorState/EncodingProcessorState::addBufferData) ---- */

static int is_buffer_data_empty(const proc_state_t *s) { return s->data_buffer == NULL || s->data_buffer->len == 0; }

static void check_low_watermark(hfilter_t *f, proc_state_t *s) {
  uint32_t limit = fm_buffer_limit(f->st);
  if (!s->above_high || s->data_buffer == NULL || s->data_buffer->len >= limit / 2) return;
  s->above_high = 0;
  if (s->watermark_requested) {
    s->watermark_requested = 0;
    hlog(LOG_DEBUG, "golang filter %s data buffer want more data", dir_of(s) ? "encode" : "decode");
    fm_watermark(f->st, dir_of(s), 0);
  }
}

static void add_buffer_data(hfilter_t *f, proc_state_t *s, obuf_t *data) {
  if (s->data_buffer == NULL) {
    s->data_buffer = calloc(1, sizeof(obuf_t));
    if (s->data_buffer == NULL) abort();
  }
  obuf_move(s->data_buffer, data);
  uint32_t limit = fm_buffer_limit(f->st);
  if (limit == 0 || s->above_high || s->data_buffer->len <= limit) return;
  s->above_high = 1;
  if (ps_state(s) == FS_WAITING_ALL_DATA) {
    if (dir_of(s) == DIR_DECODE) {
      /* On the request path exceeding buffer limits results in a 413. */
      hlog(LOG_DEBUG, "golang filter decode data buffer is full, reply with 413");
      fm_send_local_reply(f->st, 413, "Payload Too Large", 17, NULL, "request_payload_too_large");
    } else {
      hlog(LOG_DEBUG, "golang filter encode data buffer is full, reply with 500");
      fm_send_local_reply(f->st, 500, "Internal Server Error", 21, NULL, "response_payload_too_large");
    }
    return;
  }
  if (!s->watermark_requested) {
    s->watermark_requested = 1;
    fm_watermark(f->st, dir_of(s), 1);
  }
}

static void drain_buffer_data(hfilter_t *f, proc_state_t *s) {
  if (s->data_buffer && s->data_buffer->len > 0) {
    obuf_drain(s->data_buffer, s->data_buffer->len);
    check_low_watermark(f, s);
  }
}

/* ---- status handling (ProcessorState::handle*GolangStatus) ---- */

static int handle_header_status(proc_state_t *s, int status) {
  switch (status) {
  case GS_LOCAL_REPLY:
  case GS_RUNNING:
    return 0;
  case GS_CONTINUE:
    set_state(s, s->do_end_stream ? FS_DONE : FS_WAITING_DATA);
    return 1;
  case GS_STOP_AND_BUFFER:
    set_state(s, FS_WAITING_ALL_DATA);
    return 0;
  case GS_STOP_AND_BUFFER_WATERMARK:
    set_state(s, FS_WAITING_DATA);
    return 0;
  default:
    hlog(LOG_ERROR, "golang filter: unexpected header status: %d", status);
    return 0;
  }
}

static int handle_data_status(proc_state_t *s, int status) {
  int done = 0;
  switch (status) {
  case GS_LOCAL_REPLY:
  case GS_RUNNING:
    /* return directly to skip the phase growing by checking trailers */
    return 0;
  case GS_CONTINUE:
    set_state(s, s->do_end_stream ? FS_DONE : FS_WAITING_DATA);
    done = 1;
    break;
  case GS_STOP_AND_BUFFER:
    if (s->do_end_stream) hlog(LOG_ERROR, "golang filter: want more data while stream is end");
    set_state(s, FS_WAITING_ALL_DATA);
    break;
  case GS_STOP_AND_BUFFER_WATERMARK:
    if (s->do_end_stream) hlog(LOG_ERROR, "golang filter: want more data while stream is end");
    set_state(s, FS_WAITING_DATA);
    break;
  case GS_STOP_NO_BUFFER:
    if (s->do_end_stream) hlog(LOG_ERROR, "golang filter: want more data while stream is end");
    buflist_clear_latest(&s->do_data_list);
    set_state(s, FS_WAITING_DATA);
    break;
  default:
    hlog(LOG_ERROR, "golang filter: unexpected data status: %d", status);
    break;
  }
  if (s->trailers != NULL && is_buffer_data_empty(s)) set_state(s, FS_WAITING_TRAILER);
  return done;
}

static int handle_trailer_status(proc_state_t *s, int status) {
  switch (status) {
  case GS_LOCAL_REPLY:
  case GS_RUNNING:
    return 0;
  case GS_CONTINUE:
    set_state(s, FS_DONE);
    return 1;
  default:
    hlog(LOG_ERROR, "golang filter: unexpected trailer status: %d", status);
    return 0;
  }
}

static int handle_status(proc_state_t *s, int status) {
  switch (ps_state(s)) {
  case FS_PROCESSING_HEADER:
    return handle_header_status(s, status);
  case FS_PROCESSING_DATA:
    return handle_data_status(s, status);
  case FS_PROCESSING_TRAILER:
    return handle_trailer_status(s, status);
  default:
    hlog(LOG_ERROR, "golang filter: continue in unexpected state %s", kStateNames[ps_state(s)]);
    return 0;
  }
}

/* ---- calls into Go ---- */

static int do_headers(hfilter_t *f, proc_state_t *s, hmap_t *headers, int end_stream) {
  s->headers = headers;
  if (ps_state(s) != FS_WAITING_HEADER)
    hlog(LOG_ERROR, "golang filter: headers in state %s", kStateNames[ps_state(s)]);
  set_state(s, FS_PROCESSING_HEADER);
  s->do_end_stream = end_stream;
  init_request(f);
  uint64_t status = g_dso.on_header(&s->base, end_stream ? 1 : 0, hmap_size(headers), hmap_byte_size(headers));
  int done = handle_header_status(s, (int)status);
  if (done) s->headers = NULL;
  return done;
}

static int do_data_go(hfilter_t *f, proc_state_t *s, obuf_t *data, int end_stream) {
  (void)f;
  set_state(s, FS_PROCESSING_DATA);
  s->do_end_stream = end_stream;
  obuf_t *b = buflist_push(&s->do_data_list, data);
  uint64_t status = g_dso.on_data(&s->base, end_stream ? 1 : 0, (uint64_t)(uintptr_t)b, b->len);
  return handle_data_status(s, (int)status);
}

static int do_trailer_go(hfilter_t *f, proc_state_t *s, hmap_t *trailers) {
  (void)f;
  set_state(s, FS_PROCESSING_TRAILER);
  s->do_end_stream = 1;
  uint64_t status = g_dso.on_header(&s->base, 1, hmap_size(trailers), hmap_byte_size(trailers));
  return handle_trailer_status(s, (int)status);
}

static void continue_do_data(hfilter_t *f, proc_state_t *s) {
  if (!s->end_stream && buflist_empty(&s->do_data_list)) return;
  obuf_t out;
  obuf_init(&out);
  buflist_move_out(&s->do_data_list, &out);
  fm_inject_data(f->st, dir_of(s), &out, s->do_end_stream);
  obuf_free(&out);
}

int filter_headers(hfilter_t *f, int dir, hmap_t *headers, int end_stream) {
  proc_state_t *s = filter_state(f, dir);
  s->end_stream = end_stream;
  return do_headers(f, s, headers, end_stream);
}

int filter_data(hfilter_t *f, int dir, obuf_t *data, int end_stream) {
  proc_state_t *s = filter_state(f, dir);
  s->end_stream = end_stream;
  int done = 0;
  switch (ps_state(s)) {
  case FS_WAITING_DATA:
    done = do_data_go(f, s, data, end_stream);
    break;
  case FS_WAITING_ALL_DATA:
    if (end_stream) {
      if (!is_buffer_data_empty(s)) {
        /* new data = data_buffer_ + data */
        add_buffer_data(f, s, data);
        obuf_move(data, s->data_buffer);
        check_low_watermark(f, s);
      }
      /* check the state again: the buffer may have overflowed into a 413 */
      if (ps_state(s) == FS_WAITING_ALL_DATA) done = do_data_go(f, s, data, end_stream);
      break;
    }
    /* fall through */
  case FS_PROCESSING_HEADER:
  case FS_PROCESSING_DATA:
    add_buffer_data(f, s, data);
    break;
  default:
    hlog(LOG_ERROR, "golang filter: data in unexpected state %s", kStateNames[ps_state(s)]);
    break;
  }
  if (done) buflist_move_out(&s->do_data_list, data);
  return done;
}

int filter_trailers(hfilter_t *f, int dir, hmap_t *trailers) {
  proc_state_t *s = filter_state(f, dir);
  s->trailers = trailers;
  int done = 0;
  switch (ps_state(s)) {
  case FS_WAITING_TRAILER:
  case FS_WAITING_DATA:
    done = do_trailer_go(f, s, trailers);
    break;
  case FS_WAITING_ALL_DATA:
    if (!is_buffer_data_empty(s)) {
      done = do_data_go(f, s, s->data_buffer, 0);
      check_low_watermark(f, s);
      if (ps_state(s) == FS_WAITING_TRAILER) {
        continue_do_data(f, s);
        done = do_trailer_go(f, s, trailers);
      }
    } else {
      continue_do_data(f, s);
      done = do_trailer_go(f, s, trailers);
    }
    break;
  case FS_PROCESSING_HEADER:
  case FS_PROCESSING_DATA:
    break; /* wait for the previous task */
  default:
    hlog(LOG_ERROR, "golang filter: trailers in unexpected state %s", kStateNames[ps_state(s)]);
    break;
  }
  return done;
}

/* Filter::continueStatusInternal */
void filter_continue_status_internal(hfilter_t *f, proc_state_t *s, int status) {
  fstate_t saved = ps_state(s);
  int done = handle_status(s, status);
  if (done) {
    switch (saved) {
    case FS_PROCESSING_HEADER:
      /* the filter saw the stream end but Go did not: push data first, or the
       * next filter would continue with end_stream = true */
      if (s->do_end_stream || !(s->end_stream || s->trailers != NULL)) fm_continue(f->st, dir_of(s));
      break;
    case FS_PROCESSING_DATA:
      continue_do_data(f, s);
      break;
    case FS_PROCESSING_TRAILER:
      continue_do_data(f, s);
      if (filter_has_destroyed(f)) return;
      fm_continue(f->st, dir_of(s));
      break;
    default:
      break;
    }
    if (filter_has_destroyed(f)) return;
  }
  fstate_t cur = ps_state(s);
  if ((cur == FS_WAITING_DATA && (!is_buffer_data_empty(s) || s->end_stream)) ||
      (cur == FS_WAITING_ALL_DATA && (s->end_stream || s->trailers != NULL))) {
    obuf_t empty;
    obuf_init(&empty);
    obuf_t *data = s->data_buffer ? s->data_buffer : &empty;
    int d = do_data_go(f, s, data, s->end_stream);
    check_low_watermark(f, s);
    obuf_free(&empty);
    if (!d) return; /* do not process trailers when data is not finished */
    continue_do_data(f, s);
    if (filter_has_destroyed(f)) return;
  }
  if (ps_state(s) == FS_WAITING_TRAILER && s->trailers != NULL) {
    if (do_trailer_go(f, s, s->trailers)) fm_continue(f->st, dir_of(s));
  }
}

/* Filter::sendLocalReplyInternal */
void filter_send_local_reply_internal(hfilter_t *f, proc_state_t *s, int code, const char *body, size_t body_len,
                                      const hmap_t *headers, const char *details) {
  buflist_clear_all(&s->do_data_list);
  drain_buffer_data(f, s);
  /* DecodingProcessorState::sendLocalReply: the phase grows to EncodeHeader */
  if (dir_of(s) == DIR_DECODE) set_state(s, FS_WAITING_HEADER);
  fm_send_local_reply(f->st, code, body, body_len, headers, details);
}

/* ---- end of stream ---- */

void filter_on_stream_complete(hfilter_t *f) {
  atomic_store(&f->req->base.is_golang_processing_log, 1);
  g_dso.on_stream_complete(&f->req->base);
  atomic_store(&f->req->base.is_golang_processing_log, 0);
}

void filter_log(hfilter_t *f, int type, hmap_t *req_h, hmap_t *req_t, hmap_t *resp_h, hmap_t *resp_t) {
  host_req_t *r = f->req;
  init_request(f);
  uint64_t rhn = 0, rhb = 0, rtn = 0, rtb = 0, phn = 0, phb = 0, ptn = 0, ptb = 0;
  /* log() points the states at the final maps so Go can copy them */
  if (req_h) { rhn = hmap_size(req_h); rhb = hmap_byte_size(req_h); r->dec.headers = req_h; }
  if (req_t) { rtn = hmap_size(req_t); rtb = hmap_byte_size(req_t); r->dec.trailers = req_t; }
  if (resp_h) { phn = hmap_size(resp_h); phb = hmap_byte_size(resp_h); r->enc.headers = resp_h; }
  if (resp_t) { ptn = hmap_size(resp_t); ptb = hmap_byte_size(resp_t); r->enc.trailers = resp_t; }
  atomic_store(&r->base.is_golang_processing_log, 1);
  g_dso.on_log(&r->base, (uint64_t)type, &r->dec.base, &r->enc.base, rhn, rhb, rtn, rtb, phn, phb, ptn, ptb);
  atomic_store(&r->base.is_golang_processing_log, 0);
}

void filter_on_destroy(hfilter_t *f) {
  host_req_t *r = f->req;
  if (r->base.configId == 0) {
    /* Go never saw this request, so no finalizer will free it */
    host_req_free(r);
    f->req = NULL;
    atomic_store(&f->has_destroyed, 1);
    return;
  }
  /* Take mutex_ so an off-thread CAPI caller dereferencing stream-owned
   * objects (header maps) finishes before the stream can be freed. */
  pthread_mutex_lock(&f->mu);
  int already = atomic_exchange_explicit(&f->has_destroyed, 1, memory_order_acq_rel);
  pthread_mutex_unlock(&f->mu);
  if (already) return;
  int terminate = ps_is_processing_in_go(&r->dec) || ps_is_processing_in_go(&r->enc);
  g_dso.on_destroy(&r->base, terminate ? 1 : 0);
}
