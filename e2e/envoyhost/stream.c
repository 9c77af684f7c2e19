#include "stream.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "host.h"
#include "log.h"
#include "upstream.h"

host_config_t g_cfg;
host_stats_t g_stats;

uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int is_hop_by_hop(const char *k) {
  /* connection-level headers the HTTP/1 codecs and the HCM do not pass on */
  return strcasecmp(k, "connection") == 0 || strcasecmp(k, "keep-alive") == 0 ||
         strcasecmp(k, "proxy-connection") == 0 || strcasecmp(k, "transfer-encoding") == 0 ||
         strcasecmp(k, "upgrade") == 0;
}

static const char *method_name(enum evhttp_cmd_type t) {
  switch (t) {
  case EVHTTP_REQ_GET: return "GET";
  case EVHTTP_REQ_POST: return "POST";
  case EVHTTP_REQ_HEAD: return "HEAD";
  case EVHTTP_REQ_PUT: return "PUT";
  case EVHTTP_REQ_DELETE: return "DELETE";
  case EVHTTP_REQ_OPTIONS: return "OPTIONS";
  case EVHTTP_REQ_TRACE: return "TRACE";
  case EVHTTP_REQ_CONNECT: return "CONNECT";
  case EVHTTP_REQ_PATCH: return "PATCH";
  }
  return "GET";
}

static hmap_t *trailers_of(stream_t *st, int dir) { return dir == DIR_DECODE ? st->req_trailers : st->resp_trailers; }

/* ---- downstream codec (evhttp server side) ---- */

static void down_finished(stream_t *st);

static void down_headers(stream_t *st, int end_stream) {
  if (st->down == NULL || st->down_done) return;
  struct evkeyvalq *oh = evhttp_request_get_output_headers(st->down);
  const char *status = hmap_get_str(&st->resp_headers, ":status");
  int code = status ? atoi(status) : 500;
  for (size_t i = 0; i < st->resp_headers.n; i++) {
    const hentry_t *e = &st->resp_headers.e[i];
    if (e->key[0] == ':' || is_hop_by_hop(e->key)) continue;
    evhttp_add_header(oh, e->key, e->value);
  }
  /* SetDrainConnectionUponCompletion: HTTP/1 gets "connection: close" */
  if (st->drain_on_completion) evhttp_add_header(oh, "Connection", "close");
  st->resp_code = code;
  st->down_headers_sent = 1;
  if (end_stream) {
    if (st->down_conn) evhttp_connection_set_closecb(st->down_conn, NULL, NULL);
    evhttp_send_reply(st->down, code, NULL, NULL);
    down_finished(st);
  } else {
    evhttp_send_reply_start(st->down, code, NULL);
  }
}

static void down_data(stream_t *st, buf_t *data, int end_stream) {
  if (st->down == NULL || st->down_done) return;
  if (data->len > 0) {
    struct evbuffer *eb = evbuffer_new();
    evbuffer_add(eb, data->data, data->len);
    evhttp_send_reply_chunk(st->down, eb);
    evbuffer_free(eb);
  }
  if (end_stream) {
    if (st->down_conn) evhttp_connection_set_closecb(st->down_conn, NULL, NULL);
    evhttp_send_reply_end(st->down);
    down_finished(st);
  }
}

/* ---- filter manager: what follows the golang filter in each direction ---- */

static void next_headers(stream_t *st, int dir, int end_stream) {
  if (dir == DIR_DECODE) {
    if (!st->decode_aborted) router_headers(st, end_stream);
  } else {
    down_headers(st, end_stream);
  }
}

static void next_data(stream_t *st, int dir, buf_t *data, int end_stream) {
  if (dir == DIR_DECODE) {
    if (!st->decode_aborted) router_data(st, data, end_stream);
  } else {
    down_data(st, data, end_stream);
  }
}

static void next_trailers(stream_t *st, int dir) {
  if (dir == DIR_DECODE) {
    if (!st->decode_aborted) router_trailers(st);
  } else {
    /* evhttp cannot write trailers: end the body without them */
    buf_t empty;
    buf_init(&empty);
    down_data(st, &empty, 1);
  }
}

static void ensure_headers_continued(stream_t *st, int dir) {
  fm_dir_t *fm = &st->fm[dir];
  if (!fm->headers_continued) {
    fm->headers_continued = 1;
    next_headers(st, dir, 0);
  }
}

/* The filter returned Continue from its headers callback. */
static void fm_after_headers(stream_t *st, int dir, int end_stream) {
  fm_dir_t *fm = &st->fm[dir];
  fm->headers_continued = 1;
  if (fm->has_buffered) {
    /* data added by the filter inside decodeHeaders goes right after them */
    next_headers(st, dir, 0);
    fm->has_buffered = 0;
    next_data(st, dir, &fm->buffered, end_stream);
    fm->buffered.len = 0;
    return;
  }
  next_headers(st, dir, end_stream);
}

static void fm_after_data(stream_t *st, int dir, buf_t *data, int end_stream) {
  fm_dir_t *fm = &st->fm[dir];
  ensure_headers_continued(st, dir);
  if (fm->has_buffered) {
    buf_move(data, &fm->buffered);
    fm->has_buffered = 0;
  }
  next_data(st, dir, data, end_stream);
}

/* continueDecoding()/continueEncoding() (ActiveStreamFilterBase::commonContinue) */
void fm_continue(stream_t *st, int dir) {
  fm_dir_t *fm = &st->fm[dir];
  int has_trailers = trailers_of(st, dir) != NULL;
  if (!fm->headers_continued) {
    fm->headers_continued = 1;
    next_headers(st, dir, fm->complete && !fm->has_buffered && !has_trailers);
  }
  if (fm->has_buffered) {
    fm->has_buffered = 0;
    next_data(st, dir, &fm->buffered, fm->complete && !has_trailers);
    fm->buffered.len = 0;
  }
  if (fm->trailers_stopped) {
    fm->trailers_stopped = 0;
    next_trailers(st, dir);
  }
}

/* inject{De,En}codedDataToFilterChain: also continues stopped headers */
void fm_inject_data(stream_t *st, int dir, buf_t *data, int end_stream) {
  ensure_headers_continued(st, dir);
  next_data(st, dir, data, end_stream);
}

void fm_add_data(stream_t *st, int dir, buf_t *data, int streaming) {
  (void)streaming;
  fm_dir_t *fm = &st->fm[dir];
  buf_move(&fm->buffered, data);
  fm->has_buffered = 1;
}

uint32_t fm_buffer_limit(stream_t *st) {
  (void)st;
  return g_cfg.buffer_limit;
}

static void stream_feed(stream_t *st);

static void feed_task(void *arg) {
  stream_t *st = arg;
  stream_feed(st);
  stream_unref(st);
}

void fm_watermark(stream_t *st, int dir, int above) {
  if (dir == DIR_ENCODE) {
    /* evhttp offers no safe way to pause an upstream response mid-callback */
    hlog(LOG_DEBUG, "encoder watermark %s (not applied to the upstream read)", above ? "high" : "low");
    return;
  }
  st->read_disabled = above;
  if (above) atomic_fetch_add(&g_stats.decode_read_disabled, 1);
  if (!above) {
    /* resume reading the downstream body on the next loop iteration */
    st->refs++;
    worker_post(st->w, feed_task, st);
  }
}

void fm_encode_headers(stream_t *st, int end_stream) {
  st->resp_started = 1;
  if (end_stream) st->fm[DIR_ENCODE].complete = 1;
  if (filter_headers(st->filter, DIR_ENCODE, &st->resp_headers, end_stream)) fm_after_headers(st, DIR_ENCODE, end_stream);
}

void fm_encode_data(stream_t *st, buf_t *data, int end_stream) {
  if (end_stream) st->fm[DIR_ENCODE].complete = 1;
  if (filter_data(st->filter, DIR_ENCODE, data, end_stream)) fm_after_data(st, DIR_ENCODE, data, end_stream);
}

static void build_local_reply_headers(stream_t *st, int code, size_t body_len, const hmap_t *headers) {
  char tmp[32];
  hmap_free(&st->resp_headers);
  hmap_init(&st->resp_headers);
  int n = snprintf(tmp, sizeof(tmp), "%d", code);
  hmap_add(&st->resp_headers, ":status", 7, tmp, (size_t)n);
  if (headers != NULL)
    for (size_t i = 0; i < headers->n; i++)
      if (headers->e[i].vlen > 0)
        hmap_add(&st->resp_headers, headers->e[i].key, headers->e[i].klen, headers->e[i].value, headers->e[i].vlen);
  if (body_len > 0) {
    n = snprintf(tmp, sizeof(tmp), "%zu", body_len);
    hmap_set(&st->resp_headers, "content-length", 14, tmp, (size_t)n);
    if (hmap_get(&st->resp_headers, "content-type", 12) == NULL)
      hmap_add(&st->resp_headers, "content-type", 12, "text/plain", 10);
  }
}

/* FilterManager::sendLocalReply */
void fm_send_local_reply(stream_t *st, int code, const char *body, size_t body_len, const hmap_t *headers,
                         const char *details) {
  if (st->down_done || st->finishing) return;
  atomic_fetch_add(&g_stats.local_replies, 1);
  snprintf(st->details, sizeof(st->details), "%s", details ? details : "");
  buf_t b;
  buf_init(&b);
  buf_append(&b, body, body_len);
  if (!st->resp_started) {
    /* the response has not started: send it through the encoder chain,
     * including this golang filter's encodeHeaders/encodeData */
    st->decode_aborted = 1;
    router_cancel(st);
    build_local_reply_headers(st, code, body_len, headers);
    fm_encode_headers(st, body_len == 0);
    if (body_len > 0) fm_encode_data(st, &b, 1);
  } else if (!st->down_headers_sent) {
    /* headers are inside the filter chain but none went downstream: bypass
     * the filters and write the reply to the codec directly */
    st->decode_aborted = 1;
    router_cancel(st);
    build_local_reply_headers(st, code, body_len, headers);
    down_headers(st, body_len == 0);
    if (body_len > 0) down_data(st, &b, 1);
  } else {
    stream_reset(st, "local reply after response headers were sent");
  }
  buf_free(&b);
}

/* ---- stream lifetime ---- */

static void stream_free(stream_t *st) {
  hmap_free(&st->req_headers);
  hmap_free(&st->resp_headers);
  if (st->req_trailers) { hmap_free(st->req_trailers); free(st->req_trailers); }
  if (st->resp_trailers) { hmap_free(st->resp_trailers); free(st->resp_trailers); }
  free((void *)st->body);
  buf_free(&st->up_body);
  buf_free(&st->fm[0].buffered);
  buf_free(&st->fm[1].buffered);
  md_free(&st->md);
  md_free(&st->filter_state);
  filter_release(st->filter);
  free(st);
}

void stream_unref(stream_t *st) {
  if (--st->refs == 0) stream_free(st);
}

static void count_response(int code) {
  if (code >= 500) atomic_fetch_add(&g_stats.downstream_rq_5xx, 1);
  else if (code >= 400) atomic_fetch_add(&g_stats.downstream_rq_4xx, 1);
  else if (code >= 300) atomic_fetch_add(&g_stats.downstream_rq_3xx, 1);
  else if (code >= 200) atomic_fetch_add(&g_stats.downstream_rq_2xx, 1);
}

/* ActiveStream::onStreamComplete + log + destroyFilters, deferred like
 * Envoy's doDeferredStreamDestroy. */
static void stream_destroy_task(void *arg) {
  stream_t *st = arg;
  router_cancel(st);
  if (st->down != NULL && !st->down_done) {
    /* reset: drop the downstream connection without completing the reply */
    struct evhttp_request *down = st->down;
    st->down = NULL;
    st->down_done = 1;
    if (st->down_conn != NULL) {
      evhttp_connection_set_closecb(st->down_conn, NULL, NULL);
      evhttp_connection_free(st->down_conn); /* frees down too */
      st->down_conn = NULL;
    } else {
      /* already detached from its closed connection: this frees it */
      evhttp_send_reply(down, 500, NULL, NULL);
    }
  }
  filter_on_stream_complete(st->filter);
  /* AccessLogType::DownstreamEnd */
  filter_log(st->filter, 6, &st->req_headers, st->req_trailers, st->resp_started ? &st->resp_headers : NULL,
             st->resp_trailers);
  filter_on_destroy(st->filter);
  count_response(st->resp_code);
  stream_unref(st);
}

static void stream_finish(stream_t *st) {
  if (st->finishing) return;
  st->finishing = 1;
  worker_post(st->w, stream_destroy_task, st);
}

static void down_finished(stream_t *st) {
  st->down_done = 1;
  st->down = NULL; /* evhttp frees it once written */
  st->down_conn = NULL;
  stream_finish(st);
}

void stream_reset(stream_t *st, const char *why) {
  hlog(LOG_DEBUG, "stream reset: %s", why);
  atomic_fetch_add(&g_stats.downstream_rq_reset, 1);
  if (st->resp_code == 0) st->resp_code = 500;
  st->decode_aborted = 1;
  /* the destroy task closes the downstream connection outside any evhttp
   * callback of it */
  stream_finish(st);
}

static void on_down_close(struct evhttp_connection *conn, void *arg) {
  (void)conn;
  stream_t *st = arg;
  st->down_conn = NULL;
  if (!st->down_done) stream_reset(st, "downstream connection closed");
}

static void stream_feed(stream_t *st) {
  if (st->feeding) return;
  st->feeding = 1;
  while (st->body_off < st->body_len && !st->decode_aborted && !st->read_disabled && !st->finishing) {
    size_t n = st->body_len - st->body_off;
    if (n > g_cfg.read_chunk) n = g_cfg.read_chunk;
    int end = st->body_off + n == st->body_len;
    buf_t b;
    buf_init(&b);
    buf_append(&b, st->body + st->body_off, n);
    st->body_off += n;
    if (end) st->fm[DIR_DECODE].complete = 1;
    if (filter_data(st->filter, DIR_DECODE, &b, end)) fm_after_data(st, DIR_DECODE, &b, end);
    buf_free(&b);
  }
  st->feeding = 0;
}

static void add_request_id(stream_t *st) {
  if (hmap_get(&st->req_headers, "x-request-id", 12) != NULL) return;
  uint64_t a = worker_rand(st->w), b = worker_rand(st->w);
  char id[40];
  int n = snprintf(id, sizeof(id), "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff,
                   (unsigned)a & 0xfff, (unsigned)((b >> 48) & 0x3fff) | 0x8000,
                   (unsigned long long)(b & 0xffffffffffffull));
  hmap_add(&st->req_headers, "x-request-id", 12, id, (size_t)n);
}

void stream_on_request(struct evhttp_request *req, void *arg) {
  worker_t *w = arg;
  stream_t *st = calloc(1, sizeof(*st));
  if (st == NULL) abort();
  st->refs = 1;
  st->w = w;
  st->start_ns = now_ns();
  st->down = req;
  st->down_conn = evhttp_request_get_connection(req);
  st->http_minor = req->minor;
  atomic_fetch_add(&g_stats.downstream_rq_total, 1);
  if (st->down_conn != NULL) {
    char *peer = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(st->down_conn, &peer, &port);
    snprintf(st->down_peer, sizeof(st->down_peer), "%s:%u", peer ? peer : "", port);
    evhttp_connection_set_closecb(st->down_conn, on_down_close, st);
    upstream_set_nodelay(st->down_conn);
  }
  /* HTTP/1 codec + HCM: Host becomes :authority, pseudo headers first */
  struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
  const char *host = evhttp_find_header(ih, "Host");
  const char *uri = evhttp_request_get_uri(req);
  const char *method = method_name(evhttp_request_get_command(req));
  hmap_add(&st->req_headers, ":authority", 10, host ? host : "", host ? strlen(host) : 0);
  hmap_add(&st->req_headers, ":path", 5, uri, strlen(uri));
  hmap_add(&st->req_headers, ":method", 7, method, strlen(method));
  hmap_add(&st->req_headers, ":scheme", 7, "http", 4);
  for (struct evkeyval *kv = ih->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
    if (strcasecmp(kv->key, "host") == 0 || is_hop_by_hop(kv->key)) continue;
    hmap_add(&st->req_headers, kv->key, strlen(kv->key), kv->value, strlen(kv->value));
  }
  if (hmap_get(&st->req_headers, "x-forwarded-proto", 17) == NULL)
    hmap_add(&st->req_headers, "x-forwarded-proto", 17, "http", 4);
  add_request_id(st);
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  st->body_len = evbuffer_get_length(in);
  if (st->body_len > 0) {
    char *body = malloc(st->body_len);
    if (body == NULL) abort();
    evbuffer_remove(in, body, st->body_len);
    st->body = body;
  }
  st->filter = filter_new(st, w, g_cfg.plugin_name, g_cfg.plugin_name_len, g_cfg.config_id);
  int end = st->body_len == 0;
  if (end) st->fm[DIR_DECODE].complete = 1;
  if (filter_headers(st->filter, DIR_DECODE, &st->req_headers, end)) fm_after_headers(st, DIR_DECODE, end);
  stream_feed(st);
}
