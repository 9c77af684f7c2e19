/* The router filter and the ORIGINAL_DST cluster: picks the upstream the way
 * Envoy's original_dst load balancer would for an InferencePool cluster and
 * proxies the buffered request with libevent's HTTP client, streaming the
 * response back through the encoder chain chunk by chunk. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "host.h"
#include "log.h"
#include "stream.h"
#include "upstream.h"

static const char kLbNamespace[] = "envoy.lb";
static const char kDestKey[] = "x-gateway-destination-endpoint";

/* Accepts "a.b.c.d:port" or "[v6]:port" only: ORIGINAL_DST needs an IP. */
static int parse_ip_port(const char *in, char *host, size_t hostlen, unsigned *port) {
  const char *colon;
  char tmp[64];
  if (in[0] == '[') {
    const char *rb = strchr(in, ']');
    if (rb == NULL || rb[1] != ':' || (size_t)(rb - in - 1) >= sizeof(tmp)) return -1;
    memcpy(tmp, in + 1, (size_t)(rb - in - 1));
    tmp[rb - in - 1] = 0;
    colon = rb + 1;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, tmp, &a6) != 1) return -1;
  } else {
    colon = strrchr(in, ':');
    if (colon == NULL || (size_t)(colon - in) >= sizeof(tmp)) return -1;
    memcpy(tmp, in, (size_t)(colon - in));
    tmp[colon - in] = 0;
    struct in_addr a4;
    if (inet_pton(AF_INET, tmp, &a4) != 1) return -1;
  }
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end != 0 || p <= 0 || p > 65535) return -1;
  snprintf(host, hostlen, "%s", tmp);
  *port = (unsigned)p;
  return 0;
}

static void trim_first_entry(const char *in, char *out, size_t outlen) {
  while (*in == ' ' || *in == '\t') in++;
  size_t n = strcspn(in, ",");
  while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\t')) n--;
  if (n >= outlen) n = outlen - 1;
  memcpy(out, in, n);
  out[n] = 0;
}

/* Order: upstream override host, dynamic metadata envoy.lb (first entry of a
 * list), the x-gateway-destination-endpoint header, --default-upstream. */
static int pick_destination(stream_t *st, char *out, size_t outlen) {
  char host[64], cand[128];
  unsigned port;
  if (st->override_host[0] && parse_ip_port(st->override_host, host, sizeof(host), &port) == 0) {
    snprintf(out, outlen, "%s", st->override_host);
    return 0;
  }
  const buf_t *v = md_get(&st->md, kLbNamespace, kDestKey);
  if (v != NULL && md_value_string(v, cand, sizeof(cand))) {
    char first[128];
    trim_first_entry(cand, first, sizeof(first));
    if (parse_ip_port(first, host, sizeof(host), &port) == 0) {
      snprintf(out, outlen, "%s", first);
      return 0;
    }
    hlog(LOG_WARN, "metadata %s/%s is not ip:port: %s", kLbNamespace, kDestKey, first);
  }
  const char *h = hmap_get_str(&st->req_headers, kDestKey);
  if (h != NULL) {
    if (parse_ip_port(h, host, sizeof(host), &port) == 0) {
      snprintf(out, outlen, "%s", h);
      return 0;
    }
    hlog(LOG_WARN, "header %s is not ip:port: %s", kDestKey, h);
  }
  if (g_cfg.default_upstream != NULL) {
    snprintf(out, outlen, "%s", g_cfg.default_upstream);
    return 0;
  }
  return -1;
}

static enum evhttp_cmd_type method_type(const char *m) {
  static const struct { const char *n; enum evhttp_cmd_type t; } k[] = {
      {"GET", EVHTTP_REQ_GET}, {"POST", EVHTTP_REQ_POST}, {"HEAD", EVHTTP_REQ_HEAD},
      {"PUT", EVHTTP_REQ_PUT}, {"DELETE", EVHTTP_REQ_DELETE}, {"OPTIONS", EVHTTP_REQ_OPTIONS},
      {"TRACE", EVHTTP_REQ_TRACE}, {"CONNECT", EVHTTP_REQ_CONNECT}, {"PATCH", EVHTTP_REQ_PATCH}};
  for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
    if (m && strcmp(m, k[i].n) == 0) return k[i].t;
  return EVHTTP_REQ_GET;
}

static int upstream_owns_response(stream_t *st) {
  /* a local reply or a reset may have taken over the response */
  return !st->down_done && !st->finishing && st->up != NULL && !st->cancel_pending;
}

static void cancel_task(void *arg) {
  stream_t *st = arg;
  st->cancel_pending = 0;
  router_cancel(st);
  stream_unref(st);
}

/* evhttp forbids cancelling a request from inside its own callbacks: a
 * cancel requested meanwhile runs right after the callback, on the worker. */
static void leave_up_cb(stream_t *st) {
  st->in_up_cb = 0;
  if (st->cancel_pending) {
    st->refs++;
    worker_post(st->w, cancel_task, st);
  }
}

static int up_header_cb(struct evhttp_request *req, void *arg) {
  stream_t *st = arg;
  st->up_headers_seen = 1;
  /* the first request on a new connection could not have it set yet */
  if (st->up_conn != NULL) upstream_set_nodelay(st->up_conn);
  if (!upstream_owns_response(st) || st->resp_started) return 0;
  st->in_up_cb = 1;
  int code = evhttp_request_get_response_code(req);
  char tmp[16];
  int n = snprintf(tmp, sizeof(tmp), "%d", code);
  hmap_free(&st->resp_headers);
  hmap_init(&st->resp_headers);
  hmap_add(&st->resp_headers, ":status", 7, tmp, (size_t)n);
  struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
  for (struct evkeyval *kv = ih->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
    if (strcasecmp(kv->key, "connection") == 0 || strcasecmp(kv->key, "keep-alive") == 0 ||
        strcasecmp(kv->key, "transfer-encoding") == 0)
      continue;
    hmap_add(&st->resp_headers, kv->key, strlen(kv->key), kv->value, strlen(kv->value));
  }
  const char *cl = evhttp_find_header(ih, "Content-Length");
  if (cl != NULL) {
    st->up_cl_known = 1;
    st->up_cl = strtoull(cl, NULL, 10);
  }
  const char *m = hmap_get_str(&st->req_headers, ":method");
  int end = code == 204 || code == 304 || (m && strcmp(m, "HEAD") == 0) || (st->up_cl_known && st->up_cl == 0);
  if (end) st->up_end_sent = 1;
  fm_encode_headers(st, end);
  leave_up_cb(st);
  return 0;
}

static void up_chunk_cb(struct evhttp_request *req, void *arg) {
  stream_t *st = arg;
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t n = evbuffer_get_length(in);
  if (!upstream_owns_response(st) || st->up_end_sent || n == 0) return; /* evhttp drains it */
  buf_t b;
  buf_init(&b);
  b.data = malloc(n);
  if (b.data == NULL) abort();
  b.cap = n;
  b.len = (size_t)evbuffer_remove(in, b.data, n);
  st->up_received += b.len;
  /* with a content-length the codec knows the last chunk: end_stream rides on it */
  int end = st->up_cl_known && st->up_received >= st->up_cl;
  if (end) st->up_end_sent = 1;
  st->in_up_cb = 1;
  fm_encode_data(st, &b, end);
  leave_up_cb(st);
  buf_free(&b);
}

static void up_done_cb(struct evhttp_request *req, void *arg) {
  stream_t *st = arg;
  int owns = upstream_owns_response(st);
  struct evhttp_connection *conn = st->up_conn;
  st->up = NULL;
  st->up_conn = NULL;
  st->up_done = 1;
  int ok = req != NULL && evhttp_request_get_response_code(req) != 0;
  if (!ok) atomic_fetch_add(&g_stats.upstream_rq_failed, 1);
  if (owns) {
    if (!ok && !st->up_headers_seen) {
      static const char kBody[] =
          "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
      st->up = NULL;
      fm_send_local_reply(st, 503, kBody, sizeof(kBody) - 1, NULL,
                          "upstream_reset_before_response_started{connection_failure}");
    } else if (!ok) {
      stream_reset(st, "upstream reset after response started");
    } else if (!st->up_end_sent) {
      st->up_end_sent = 1;
      buf_t empty;
      buf_init(&empty);
      fm_encode_data(st, &empty, 1);
    }
  }
  if (conn != NULL) upstream_pool_put(st->w, conn, ok);
  stream_unref(st);
}

static void upstream_send(stream_t *st) {
  if (st->up_sent) return;
  st->up_sent = 1;
  char host[64];
  unsigned port;
  if (parse_ip_port(st->dest, host, sizeof(host), &port) != 0) {
    fm_send_local_reply(st, 503, "no healthy upstream", 19, NULL, "no_healthy_upstream");
    return;
  }
  const hentry_t *cl = hmap_get(&st->req_headers, "content-length", 14);
  if (cl != NULL && strtoull(cl->value, NULL, 10) != st->up_body.len) {
    /* Envoy would forward the stale length and the upstream would read a
     * truncated or overlong body; fail loudly instead so tests catch it. */
    atomic_fetch_add(&g_stats.content_length_mismatch, 1);
    hlog(LOG_ERROR, "request content-length %s does not match the %zu body bytes after the filter", cl->value,
         st->up_body.len);
    static const char kBody[] = "envoyhost: content-length does not match the body the filter produced";
    fm_send_local_reply(st, 500, kBody, sizeof(kBody) - 1, NULL, "envoyhost_content_length_mismatch");
    return;
  }
  struct evhttp_connection *conn = upstream_pool_get(st->w, host, (uint16_t)port);
  struct evhttp_request *req = evhttp_request_new(up_done_cb, st);
  evhttp_request_set_header_cb(req, up_header_cb);
  evhttp_request_set_chunked_cb(req, up_chunk_cb);
  struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
  const char *authority = hmap_get_str(&st->req_headers, ":authority");
  evhttp_add_header(oh, "Host", authority && authority[0] ? authority : st->dest);
  for (size_t i = 0; i < st->req_headers.n; i++) {
    const hentry_t *e = &st->req_headers.e[i];
    if (e->key[0] == ':') continue;
    evhttp_add_header(oh, e->key, e->value);
  }
  if (cl == NULL && st->up_body.len > 0) {
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%zu", st->up_body.len);
    evhttp_add_header(oh, "Content-Length", tmp);
  }
  evbuffer_add(evhttp_request_get_output_buffer(req), st->up_body.data, st->up_body.len);
  st->refs++;
  st->up = req;
  st->up_conn = conn;
  st->attempt_count = 1;
  atomic_fetch_add(&g_stats.upstream_rq_total, 1);
  const char *path = hmap_get_str(&st->req_headers, ":path");
  if (evhttp_make_request(conn, req, method_type(hmap_get_str(&st->req_headers, ":method")), path ? path : "/") != 0) {
    /* evhttp_make_request frees req on failure */
    st->up = NULL;
    st->up_conn = NULL;
    upstream_pool_put(st->w, conn, 0);
    stream_unref(st);
    fm_send_local_reply(st, 503, "no healthy upstream", 19, NULL, "no_healthy_upstream");
  }
}

void router_headers(stream_t *st, int end_stream) {
  if (st->routed) return;
  st->routed = 1;
  if (pick_destination(st, st->dest, sizeof(st->dest)) != 0) {
    fm_send_local_reply(st, 503, "no healthy upstream", 19, NULL, "no_healthy_upstream");
    return;
  }
  if (end_stream) upstream_send(st);
}

void router_data(stream_t *st, buf_t *data, int end_stream) {
  if (st->decode_aborted) return;
  buf_move(&st->up_body, data);
  if (end_stream) upstream_send(st);
}

void router_trailers(stream_t *st) {
  /* evhttp's client cannot send trailers; the body is complete */
  if (!st->decode_aborted) upstream_send(st);
}

void router_cancel(stream_t *st) {
  if (st->up == NULL) return;
  if (st->in_up_cb) {
    st->cancel_pending = 1;
    return;
  }
  struct evhttp_request *req = st->up;
  struct evhttp_connection *conn = st->up_conn;
  st->up = NULL;
  st->up_conn = NULL;
  evhttp_cancel_request(req); /* no callback runs for a cancelled request */
  upstream_pool_put(st->w, conn, 0);
  stream_unref(st);
}
