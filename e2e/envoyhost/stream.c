#include "stream.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "conn.h"
#include "host.h"
#include "localreply.h"
#include "log.h"
#include "registry.h"
#include "respflags.h"

host_config_t g_cfg;
host_stats_t g_stats;

uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static hmap_t *trailers_of(stream_t *st, int dir) { return dir == DIR_DECODE ? st->req_trailers : st->resp_trailers; }

void stream_set_flag(stream_t *st, int rf) {
  if (rf >= 0) st->flags |= RF_BIT(rf);
}

/* ---- the codec side of the encoder (after the golang filter) ---- */

static void down_finished(stream_t *st);

static void down_headers(stream_t *st, int end_stream) {
  if (st->down_done || st->conn == NULL) return;
  const char *status = hmap_get_str(&st->resp_headers, ":status");
  st->resp_code = status ? atoi(status) : 500;
  /* SetDrainConnectionUponCompletion: HTTP/1 says connection: close */
  if (st->drain_on_completion) st->conn->close_after = 1;
  if (st->resp_first_ns == 0) st->resp_first_ns = now_ns();
  st->down_headers_sent = 1;
  /* ActiveStream::encodeHeaders, after the encoder filters:
   * server_header_transformation with the default server_name "envoy"
   * (http/conn_manager_impl.cc:1929-1934) */
  int sh = st->chain->server_header;
  if (sh == SERVER_OVERWRITE || (sh == SERVER_APPEND_IF_ABSENT && hmap_get(&st->resp_headers, "server", 6) == NULL))
    hmap_set(&st->resp_headers, "server", 6, "envoy", 5);
  /* ActiveStream::encodeHeaders blocks the route cache: from here on
   * clearing it is a no-op (http/conn_manager_impl.cc:2011-2014) */
  st->route_blocked = 1;
  if (st->head_request) {
    /* a HEAD response ends with its headers (the codec drops any body) */
    end_stream = 1;
  }
  struct dconn *c = st->conn;
  if (end_stream) st->down_done = 1;
  conn_encode_headers(c, &st->resp_headers, end_stream);
  if (end_stream) down_finished(st);
}

static void down_data(stream_t *st, obuf_t *data, int end_stream) {
  if (st->down_done || st->conn == NULL) return;
  st->bytes_sent += data->len;
  struct dconn *c = st->conn;
  if (end_stream) st->down_done = 1;
  conn_encode_data(c, data, end_stream);
  if (end_stream) down_finished(st);
}

static void down_trailers(stream_t *st) {
  if (st->down_done || st->conn == NULL) return;
  struct dconn *c = st->conn;
  st->down_done = 1;
  conn_encode_trailers(c, st->resp_trailers);
  down_finished(st);
}

/* ---- filter manager: what follows the golang filter in each direction ---- */

static void next_headers(stream_t *st, int dir, int end_stream) {
  if (dir == DIR_DECODE) {
    if (!st->decode_aborted) router_headers(st, end_stream);
  } else {
    down_headers(st, end_stream);
  }
}

static void next_data(stream_t *st, int dir, obuf_t *data, int end_stream) {
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
    down_trailers(st);
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
    obuf_drain(&fm->buffered, fm->buffered.len);
    return;
  }
  next_headers(st, dir, end_stream);
}

static void fm_after_data(stream_t *st, int dir, obuf_t *data, int end_stream) {
  fm_dir_t *fm = &st->fm[dir];
  ensure_headers_continued(st, dir);
  if (fm->has_buffered) {
    obuf_move(data, &fm->buffered);
    fm->has_buffered = 0;
  }
  next_data(st, dir, data, end_stream);
}

static void fm_after_trailers(stream_t *st, int dir) {
  fm_dir_t *fm = &st->fm[dir];
  ensure_headers_continued(st, dir);
  if (fm->has_buffered) {
    fm->has_buffered = 0;
    next_data(st, dir, &fm->buffered, 0);
    obuf_drain(&fm->buffered, fm->buffered.len);
  }
  next_trailers(st, dir);
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
    obuf_drain(&fm->buffered, fm->buffered.len);
  }
  if (fm->trailers_stopped) {
    fm->trailers_stopped = 0;
    next_trailers(st, dir);
  }
}

/* inject{De,En}codedDataToFilterChain: also continues stopped headers */
void fm_inject_data(stream_t *st, int dir, obuf_t *data, int end_stream) {
  ensure_headers_continued(st, dir);
  next_data(st, dir, data, end_stream);
}

void fm_add_data(stream_t *st, int dir, obuf_t *data, int streaming) {
  (void)streaming;
  fm_dir_t *fm = &st->fm[dir];
  obuf_move(&fm->buffered, data);
  fm->has_buffered = 1;
}

uint32_t fm_buffer_limit(stream_t *st) { return st->buffer_limit; }

void fm_watermark(stream_t *st, int dir, int above) {
  if (dir == DIR_ENCODE) {
    hlog(LOG_DEBUG, "encoder watermark %s (not applied to the upstream read)", above ? "high" : "low");
    return;
  }
  if (above) atomic_fetch_add(&g_stats.decode_read_disabled, 1);
  st->read_disabled = above;
  if (st->conn) conn_read_disable(st->conn, above);
}

void fm_clear_route_cache(stream_t *st) {
  /* ActiveStream::clearRouteCache: ignored once the route cache is blocked,
   * else the cached route is dropped and re-matched when next asked for
   * (http/conn_manager_impl.cc:2468-2477) */
  if (st->route_blocked) return;
  st->route_cache_clears++;
  st->route_cached = 0;
  st->route = NULL;
  st->vhost = NULL;
  atomic_fetch_add(&g_stats.route_cache_cleared, 1);
}

/* decode frames into the chain: through the golang filter if there is one */
static void decode_headers(stream_t *st, int end_stream) {
  if (end_stream) st->fm[DIR_DECODE].complete = 1;
  if (st->filter == NULL) {
    next_headers(st, DIR_DECODE, end_stream);
    st->fm[DIR_DECODE].headers_continued = 1;
    return;
  }
  if (filter_headers(st->filter, DIR_DECODE, &st->req_headers, end_stream)) fm_after_headers(st, DIR_DECODE, end_stream);
}

void fm_encode_headers(stream_t *st, int end_stream) {
  st->resp_started = 1;
  stream_touch(st);
  if (end_stream) st->fm[DIR_ENCODE].complete = 1;
  if (st->filter == NULL) {
    st->fm[DIR_ENCODE].headers_continued = 1;
    down_headers(st, end_stream);
    return;
  }
  if (filter_headers(st->filter, DIR_ENCODE, &st->resp_headers, end_stream)) fm_after_headers(st, DIR_ENCODE, end_stream);
}

void fm_encode_data(stream_t *st, obuf_t *data, int end_stream) {
  stream_touch(st);
  if (end_stream) st->fm[DIR_ENCODE].complete = 1;
  if (st->filter == NULL) {
    down_data(st, data, end_stream);
    return;
  }
  if (filter_data(st->filter, DIR_ENCODE, data, end_stream)) fm_after_data(st, DIR_ENCODE, data, end_stream);
}

void fm_encode_trailers(stream_t *st) {
  stream_touch(st);
  st->fm[DIR_ENCODE].complete = 1;
  if (st->filter == NULL) {
    down_trailers(st);
    return;
  }
  if (filter_trailers(st->filter, DIR_ENCODE, st->resp_trailers)) fm_after_trailers(st, DIR_ENCODE);
  else st->fm[DIR_ENCODE].trailers_stopped = 1;
}

/* ---- local replies (FilterManager::sendLocalReply, Utility::prepareLocalReply) ---- */

static void prepare_local_reply(stream_t *st, int *code, buf_t *body, const hmap_t *headers, int with_route_headers) {
  char tmp[32];
  hmap_free(&st->resp_headers);
  hmap_init(&st->resp_headers);
  int n = snprintf(tmp, sizeof(tmp), "%d", *code);
  hmap_add(&st->resp_headers, ":status", 7, tmp, (size_t)n);
  /* modify_headers: the filter's headers, or the route's response headers */
  if (headers != NULL)
    for (size_t i = 0; i < headers->n; i++)
      if (headers->e[i].vlen > 0)
        hmap_add(&st->resp_headers, headers->e[i].key, headers->e[i].klen, headers->e[i].value, headers->e[i].vlen);
  fmt_ctx_t fc;
  hcm_fmt_ctx(st, &fc);
  if (with_route_headers && st->route != NULL) {
    hmuts_apply(&st->route->resp_headers, &st->resp_headers, &fc);
    if (st->vhost) hmuts_apply(&st->vhost->resp_headers, &st->resp_headers, &fc);
    if (st->rc) hmuts_apply(&st->rc->resp_headers, &st->resp_headers, &fc);
  }
  /* rewrite: local_reply_config, applied to every local reply */
  const char *ct_before = hmap_get_str(&st->resp_headers, "content-type");
  char *ct_copy = ct_before ? strdup(ct_before) : NULL;
  buf_t orig;
  buf_init(&orig);
  buf_append(&orig, body->data, body->len);
  const char *content_type = "text/plain";
  localreply_rewrite(st->chain->lr, &fc, code, body, &st->resp_headers, &content_type);
  const char *ct_after = hmap_get_str(&st->resp_headers, "content-type");
  int custom_ct = (ct_copy == NULL) != (ct_after == NULL) || (ct_copy && ct_after && strcmp(ct_copy, ct_after) != 0);
  free(ct_copy);
  if (body->len > 0) {
    n = snprintf(tmp, sizeof(tmp), "%zu", body->len);
    hmap_set(&st->resp_headers, "content-length", 14, tmp, (size_t)n);
    int changed = orig.len != body->len || memcmp(orig.data ? orig.data : "", body->data, body->len) != 0;
    if (ct_after == NULL || (changed && !custom_ct))
      hmap_set(&st->resp_headers, "content-type", 12, content_type, strlen(content_type));
  } else {
    hmap_remove(&st->resp_headers, "content-length", 14);
    hmap_remove(&st->resp_headers, "content-type", 12);
  }
  buf_free(&orig);
  st->local_body.len = 0;
  buf_append(&st->local_body, body->data, body->len);
}

static void send_local_reply(stream_t *st, int code, const char *body, size_t body_len, const hmap_t *headers,
                             const char *details, int with_route_headers) {
  if (st->down_done || st->finishing) return;
  atomic_fetch_add(&g_stats.local_replies, 1);
  snprintf(st->details, sizeof(st->details), "%s", details ? details : "");
  buf_t b;
  buf_init(&b);
  buf_append(&b, body, body_len);
  obuf_t ob; /* the body as the codec gets it (Buffer::OwnedImpl of the reply) */
  obuf_init(&ob);
  if (!st->resp_started) {
    /* the response has not started: through the encoder chain, including
     * the golang filter's encodeHeaders/encodeData */
    st->decode_aborted = 1;
    router_cancel(st);
    prepare_local_reply(st, &code, &b, headers, with_route_headers);
    int end = b.len == 0 || st->head_request;
    obuf_add(&ob, b.data, b.len);
    fm_encode_headers(st, end);
    if (!end) fm_encode_data(st, &ob, 1);
  } else if (!st->down_headers_sent) {
    /* headers are in the filter chain but none went downstream: write the
     * reply to the codec directly */
    st->decode_aborted = 1;
    router_cancel(st);
    prepare_local_reply(st, &code, &b, headers, with_route_headers);
    int end = b.len == 0 || st->head_request;
    obuf_add(&ob, b.data, b.len);
    down_headers(st, end);
    if (!end) down_data(st, &ob, 1);
  } else {
    stream_reset(st, "local reply after response headers were sent");
  }
  obuf_free(&ob);
  buf_free(&b);
}

void fm_send_local_reply(stream_t *st, int code, const char *body, size_t body_len, const hmap_t *headers,
                         const char *details) {
  send_local_reply(st, code, body, body_len, headers, details, 0);
}

void stream_local_reply(stream_t *st, int code, const char *body, int rf, const char *details,
                        int with_route_headers) {
  stream_set_flag(st, rf);
  send_local_reply(st, code, body, strlen(body), NULL, details, with_route_headers);
}

/* ---- stream lifetime ---- */

static void stream_free(stream_t *st) {
  hmap_free(&st->req_headers);
  hmap_free(&st->resp_headers);
  if (st->req_trailers) { hmap_free(st->req_trailers); free(st->req_trailers); }
  if (st->resp_trailers) { hmap_free(st->resp_trailers); free(st->resp_trailers); }
  obuf_free(&st->fm[0].buffered);
  obuf_free(&st->fm[1].buffered);
  buf_free(&st->local_body);
  md_free(&st->md);
  md_free(&st->filter_state);
  router_free(st);
  if (st->filter) filter_release(st->filter);
  routecfg_unref(st->rc);
  fconfig_unref(st->fc);
  chain_unref(st->chain);
  free(st);
}

void stream_unref(stream_t *st) {
  if (--st->refs == 0) stream_free(st);
}

/* onStreamComplete, log(DownstreamEnd), destroyFilters: deferred like
 * Envoy's doDeferredStreamDestroy (conn_manager_impl.cc:331-400). */
static void stream_destroy_task(void *arg) {
  stream_t *st = arg;
  router_cancel(st);
  hcm_disarm_timers(st);
  if (st->conn != NULL) {
    /* not completed downstream: a reset closes the HTTP/1 connection */
    struct dconn *c = st->conn;
    conn_stream_reset(c);
  }
  st->end_ns = now_ns();
  if (st->filter) {
    filter_on_stream_complete(st->filter);
    filter_log(st->filter, 6, &st->req_headers, st->req_trailers, st->resp_started ? &st->resp_headers : NULL,
               st->resp_trailers);
  }
  hcm_log(st);
  if (st->filter) filter_on_destroy(st->filter);
  hcm_count_response(st);
  stream_unref(st);
}

static void stream_finish(stream_t *st) {
  if (st->finishing) return;
  st->finishing = 1;
  worker_post(st->w, stream_destroy_task, st);
}

static void down_finished(stream_t *st) { stream_finish(st); }

void stream_detach(stream_t *st) {
  st->conn = NULL;
  stream_finish(st);
}

void stream_reset(stream_t *st, const char *why) {
  hlog(LOG_DEBUG, "stream reset: %s", why);
  if (st->reset) return;
  st->reset = 1;
  atomic_fetch_add(&g_stats.downstream_rq_reset, 1);
  st->decode_aborted = 1;
  if (st->details[0] == 0) snprintf(st->details, sizeof(st->details), "%s", why);
  router_cancel(st);
  stream_finish(st);
}

void stream_downstream_reset(stream_t *st) {
  /* the connection is closing: it already let go of the stream */
  st->conn = NULL;
  atomic_fetch_add(st->chain->rq_rx_reset, 1);
  stream_set_flag(st, RF_DOWNSTREAM_CONNECTION_TERMINATION);
  snprintf(st->details, sizeof(st->details), "downstream_remote_disconnect");
  stream_reset(st, "downstream_remote_disconnect");
}

/* ---- creation ---- */

static int is_hop_by_hop(const char *k) {
  return strcasecmp(k, "connection") == 0 || strcasecmp(k, "keep-alive") == 0 ||
         strcasecmp(k, "proxy-connection") == 0 || strcasecmp(k, "transfer-encoding") == 0 ||
         strcasecmp(k, "upgrade") == 0;
}

static stream_t *stream_alloc(struct dconn *c) {
  stream_t *st = calloc(1, sizeof(*st));
  if (st == NULL) abort();
  st->refs = 1;
  st->w = c->w;
  st->conn = c;
  c->st = st;
  st->chain = c->chain;
  chain_ref(st->chain);
  st->start_ns = now_ns();
  st->start_wall_ms = wall_ms();
  snprintf(st->peer, sizeof(st->peer), "%s", c->peer);
  snprintf(st->local, sizeof(st->local), "%s", c->local);
  st->buffer_limit = st->chain->buffer_limit;
  st->idle_timeout_ms = st->chain->stream_idle_timeout_ms;
  atomic_fetch_add(&g_stats.downstream_rq_total, 1);
  atomic_fetch_add(st->chain->rq_total, 1);
  return st;
}

/* The HTTP/1 codec's header map: Host becomes :authority, an absolute-form
 * target is split (allow_absolute_url), pseudo headers first. */
static void build_request_headers(stream_t *st, h1_head_t *h) {
  const char *host = hmap_get_str(&h->headers, "host");
  const char *target = h->target ? h->target : "";
  const char *path = target;
  char authority[512] = "";
  if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
    const char *a = strstr(target, "://") + 3;
    const char *slash = strchr(a, '/');
    size_t al = slash ? (size_t)(slash - a) : strlen(a);
    snprintf(authority, sizeof(authority), "%.*s", (int)al, a);
    path = slash ? slash : "/";
    host = authority;
  }
  if (host) hmap_add(&st->req_headers, ":authority", 10, host, strlen(host));
  hmap_add(&st->req_headers, ":path", 5, path, strlen(path));
  hmap_add(&st->req_headers, ":method", 7, h->method, strlen(h->method));
  /* the codec sets :scheme only for an absolute-form target; the HCM
   * fills it in from x-forwarded-proto (hcm.c) */
  if (path != target) {
    char scheme[6];
    size_t n = strncasecmp(target, "https", 5) == 0 ? 5 : 4;
    for (size_t i = 0; i < n; i++) scheme[i] = (char)tolower((unsigned char)target[i]);
    hmap_add(&st->req_headers, ":scheme", 7, scheme, n);
  }
  for (size_t i = 0; i < h->headers.n; i++) {
    const hentry_t *e = &h->headers.e[i];
    if (strcmp(e->key, "host") == 0 || is_hop_by_hop(e->key)) continue;
    hmap_add(&st->req_headers, e->key, e->klen, e->value, e->vlen);
  }
}

/* getMergedConfigId: the filter-level id merged with the per-route configs
 * of the virtual host, then the route, for this plugin name. */
static uint64_t merged_config_id(stream_t *st) {
  uint64_t id = st->fc->id;
  const vhost_t *vh = st->vhost;
  const route_t *r = st->route;
  if (vh && vh->golang && vh->golang->plugin_name == st->fc->plugin_name) id = rplugin_merged(vh->golang, id);
  if (r && r->golang && r->golang->plugin_name == st->fc->plugin_name) id = rplugin_merged(r->golang, id);
  return id;
}

/* HealthCheckFilter with pass_through_mode false: a request whose headers
 * all match is answered by the filter once it is complete, 200
 * health_check_ok (503 health_check_failed only after the admin's
 * /healthcheck/fail, which the host does not have); its body goes nowhere
 * (extensions/filters/http/health_check/health_check.cc:55-145). */
static int health_check_request(stream_t *st) {
  chain_t *ch = st->chain;
  if (!ch->has_hc) return 0;
  for (size_t i = 0; i < ch->nhc; i++)
    if (!hdrmatch_match(&ch->hc[i], &st->req_headers)) return 0;
  return 1;
}

static void health_check_complete(stream_t *st) {
  stream_local_reply(st, 200, "", -1, "health_check_ok", 0);
}

void stream_new(struct dconn *c, h1_head_t *head, int end_stream) {
  stream_t *st = stream_alloc(c);
  st->minor = head->minor;
  st->head_request = strcmp(head->method, "HEAD") == 0;
  st->remote_complete = end_stream;
  if (end_stream) st->req_done_ns = st->start_ns;
  build_request_headers(st, head);
  hcm_arm_timers(st);
  st->refs++;
  if (hcm_decode_headers(st, end_stream) == 0) {
    chain_t *ch = st->chain;
    if (health_check_request(st)) {
      st->health_check = 1;
      if (end_stream) health_check_complete(st);
    } else {
      if (ch->has_golang) {
        if (ch->golang) {
          st->fc = ch->golang;
          fconfig_ref(st->fc);
        } else {
          st->fc = registry_ecds(ch->golang_ecds);
        }
        if (st->fc == NULL) {
          /* MissingConfigFilter (http/filter_chain_helper.h:29-38) */
          st->missing_config = 1;
          stream_local_reply(st, 500, "", RF_NO_FILTER_CONFIG_FOUND, "", 0);
        } else {
          st->filter = filter_new(st, st->w, st->fc->plugin_name, strlen(st->fc->plugin_name), merged_config_id(st));
        }
      }
      if (!st->missing_config) decode_headers(st, end_stream);
    }
  }
  stream_unref(st);
}

void stream_decode_data(stream_t *st, obuf_t *data, int end_stream) {
  st->bytes_received += data->len;
  if (end_stream) {
    st->remote_complete = 1;
    st->req_done_ns = now_ns();
  }
  stream_touch(st);
  if (st->decode_aborted || st->finishing) return;
  if (st->health_check) {
    if (end_stream) health_check_complete(st);
    return;
  }
  if (end_stream) st->fm[DIR_DECODE].complete = 1;
  if (st->filter == NULL) {
    if (st->missing_config) return;
    next_data(st, DIR_DECODE, data, end_stream);
    return;
  }
  if (filter_data(st->filter, DIR_DECODE, data, end_stream)) fm_after_data(st, DIR_DECODE, data, end_stream);
}

void stream_decode_trailers(stream_t *st, hmap_t *trailers) {
  st->remote_complete = 1;
  st->req_done_ns = now_ns();
  stream_touch(st);
  if (st->decode_aborted || st->finishing) return;
  if (st->health_check) {
    health_check_complete(st);
    return;
  }
  st->req_trailers = calloc(1, sizeof(hmap_t));
  if (st->req_trailers == NULL) abort();
  for (size_t i = 0; i < trailers->n; i++)
    hmap_add(st->req_trailers, trailers->e[i].key, trailers->e[i].klen, trailers->e[i].value, trailers->e[i].vlen);
  st->fm[DIR_DECODE].complete = 1;
  if (st->filter == NULL) {
    if (!st->missing_config) next_trailers(st, DIR_DECODE);
    return;
  }
  if (filter_trailers(st->filter, DIR_DECODE, st->req_trailers)) fm_after_trailers(st, DIR_DECODE);
  else st->fm[DIR_DECODE].trailers_stopped = 1;
}

void stream_protocol_error(stream_t *st, int status, const char *details) {
  stream_set_flag(st, RF_DOWNSTREAM_PROTOCOL_ERROR);
  if (!st->resp_started) stream_local_reply(st, status, status == 431 ? "Request Header Fields Too Large" : "Bad Request", -1, details, 0);
  else stream_reset(st, details);
}

void stream_protocol_error_new(struct dconn *c, int status, const char *details) {
  /* ServerConnectionImpl::sendProtocolError starts a stream to answer
   * through the HCM (codec_impl.cc:1387-1408): local_reply_config applies */
  stream_t *st = stream_alloc(c);
  st->minor = c->p.head.minor;
  if (c->p.head.method[0]) hmap_add(&st->req_headers, ":method", 7, c->p.head.method, strlen(c->p.head.method));
  if (c->p.head.target) hmap_add(&st->req_headers, ":path", 5, c->p.head.target, strlen(c->p.head.target));
  st->refs++;
  const char *body = status == 431 ? "Request Header Fields Too Large"
                     : status == 408 ? "request header timeout"
                     : status == 501 ? "Not Implemented"
                                     : "Bad Request";
  stream_local_reply(st, status, body, status == 408 ? -1 : RF_DOWNSTREAM_PROTOCOL_ERROR, details, 0);
  stream_unref(st);
}
