/* The HTTP connection manager's per-stream work around the filter chain:
 * ActiveStream::decodeHeaders (conn_manager_impl.cc:1354-1575), the cached
 * route and its refresh after clearRouteCache (2468-2477, refreshBufferLimit
 * 2446-2466), stream timers (1061-1085), the access log and stats. */
#include <ctype.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "accesslog.h"
#include "conn.h"
#include "format.h"
#include "host.h"
#include "log.h"
#include "registry.h"
#include "respflags.h"
#include "stream.h"

void hcm_fmt_ctx(stream_t *st, fmt_ctx_t *c) {
  memset(c, 0, sizeof(*c));
  c->req = &st->req_headers;
  c->resp = st->resp_started || st->resp_headers.n ? &st->resp_headers : NULL;
  c->resp_trailers = st->resp_trailers;
  c->code = st->resp_code;
  c->details = st->details;
  c->flags = st->flags;
  c->local_body = st->local_body.data;
  c->local_body_len = st->local_body.len;
  c->md = &st->md;
  c->upstream_host = st->upstream_host;
  c->cluster = st->cluster_name;
  c->route_name = st->route ? st->route->name : NULL;
  c->health_check = st->health_check;
  c->upstream_local = st->upstream_local;
  c->transport_failure = st->transport_failure;
  c->remote = st->peer;
  c->local = st->local;
  c->minor = st->minor;
  c->start_wall_ms = st->start_wall_ms;
  uint64_t end = st->end_ns ? st->end_ns : now_ns();
  c->duration_ms = (int64_t)((end - st->start_ns) / 1000000);
  c->request_duration_ms = st->req_done_ns ? (int64_t)((st->req_done_ns - st->start_ns) / 1000000) : -1;
  c->response_duration_ms = st->resp_first_ns ? (int64_t)((st->resp_first_ns - st->start_ns) / 1000000) : -1;
  c->bytes_received = st->bytes_received;
  c->bytes_sent = st->bytes_sent;
  c->attempts = st->attempt_count;
}

/* ---- route ---- */

static void refresh_route(stream_t *st) {
  st->route_cached = 1;
  st->route = st->rc ? routecfg_match(st->rc, &st->req_headers, &st->vhost) : NULL;
  if (st->route == NULL) return;
  /* refreshCachedRoute -> refreshBufferLimit: a route limit only ever raises
   * the stream's (http/conn_manager_impl.cc:2400, 2446-2466) */
  int64_t limit = st->route->body_buffer_limit >= 0 ? st->route->body_buffer_limit
                  : st->vhost ? st->vhost->body_buffer_limit : -1;
  if (limit > (int64_t)st->buffer_limit) st->buffer_limit = (uint32_t)(limit > 0xffffffffLL ? 0xffffffffLL : limit);
  if (st->route->action == ACTION_ROUTE && st->route->idle_timeout_ms >= 0) st->idle_timeout_ms = st->route->idle_timeout_ms;
}

const route_t *hcm_route(stream_t *st) {
  if (!st->route_cached) refresh_route(st);
  return st->route;
}

/* ---- path and host normalisation (ConnectionManagerUtility::maybeNormalizePath/Host,
 * http/conn_manager_utility.cc:770-850) ---- */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* PathUtil::canonicalPath (Chromium's CanonicalizePath): unreserved
 * characters are unescaped, other escapes upper-cased, "." and ".."
 * segments resolved (RFC 3986 5.2.4). */
static int canonical_path(const char *in, size_t n, buf_t *out) {
  buf_t dec;
  buf_init(&dec);
  for (size_t i = 0; i < n; i++) {
    int h = in[i] == '%' && i + 1 < n ? hexval(in[i + 1]) : -1;
    int l = in[i] == '%' && i + 2 < n ? hexval(in[i + 2]) : -1;
    if (h < 0 || l < 0) {
      buf_append(&dec, &in[i], 1);
      continue;
    }
    char ch = (char)(h * 16 + l);
    if (isalnum((unsigned char)ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      buf_append(&dec, &ch, 1);
    } else {
      char esc[3] = {'%', "0123456789ABCDEF"[h], "0123456789ABCDEF"[l]};
      buf_append(&dec, esc, 3);
    }
    i += 2;
  }
  const char *p = dec.data ? dec.data : "";
  size_t len = dec.len, nseg = 0;
  size_t *starts = calloc(len + 1, sizeof(size_t)), *lens = calloc(len + 1, sizeof(size_t));
  if (starts == NULL || lens == NULL) abort();
  int trailing = 0;
  for (size_t i = 1; i <= len;) {
    size_t j = i;
    while (j < len && p[j] != '/') j++;
    size_t sl = j - i;
    int last = j >= len;
    if (sl == 1 && p[i] == '.') {
      trailing = last;
    } else if (sl == 2 && p[i] == '.' && p[i + 1] == '.') {
      if (nseg > 0) nseg--;
      trailing = last;
    } else {
      starts[nseg] = i;
      lens[nseg++] = sl;
      trailing = 0;
    }
    i = j + 1;
  }
  out->len = 0;
  for (size_t s = 0; s < nseg; s++) {
    buf_append(out, "/", 1);
    buf_append(out, p + starts[s], lens[s]);
  }
  if (out->len == 0 || trailing) buf_append(out, "/", 1);
  free(starts);
  free(lens);
  buf_free(&dec);
  return 0;
}

/* PathUtil::unescapeSlashes: %2F %2f %5C %5c in the path (not the query)
 * become / and \ (http/path_utility.cc:74-98). 1 when one was found. */
static int unescape_slashes(stream_t *st) {
  const char *path = hmap_get_str(&st->req_headers, ":path");
  size_t plen = strcspn(path, "?");
  if (memchr(path, '%', plen) == NULL) return 0;
  buf_t out;
  buf_init(&out);
  for (size_t i = 0; i < plen; i++) {
    if (path[i] == '%' && i + 2 < plen &&
        ((path[i + 1] == '2' && (path[i + 2] == 'F' || path[i + 2] == 'f')) ||
         (path[i + 1] == '5' && (path[i + 2] == 'C' || path[i + 2] == 'c')))) {
      buf_append(&out, path[i + 1] == '2' ? "/" : "\\", 1);
      i += 2;
    } else {
      buf_append(&out, path + i, 1);
    }
  }
  int found = out.len != plen;
  buf_append(&out, path + plen, strlen(path + plen));
  if (found) hmap_set(&st->req_headers, ":path", 5, out.data, out.len);
  buf_free(&out);
  return found;
}

/* ConnectionManagerUtility::maybeNormalizePath (http/conn_manager_utility.cc:770-818):
 * escaped slashes first, then normalisation, then merging. -1 rejects,
 * 1 redirects (to the new path), 0 goes on. */
static int normalize_path(stream_t *st) {
  if (hmap_get_str(&st->req_headers, ":path") == NULL) return 0;
  int action = 0;
  if (st->chain->escaped_slashes != ESCAPED_KEEP && unescape_slashes(st)) {
    if (st->chain->escaped_slashes == ESCAPED_REJECT) return -1;
    if (st->chain->escaped_slashes == ESCAPED_REDIRECT) action = 1;
  }
  const char *path = hmap_get_str(&st->req_headers, ":path");
  size_t plen = strcspn(path, "?#");
  buf_t out;
  buf_init(&out);
  if (st->chain->normalize_path) {
    if (canonical_path(path, plen, &out) != 0) {
      buf_free(&out);
      return -1;
    }
  } else {
    buf_append(&out, path, plen);
  }
  if (st->chain->merge_slashes) {
    /* PathUtil::mergeSlashes, after normalisation */
    size_t w = 0;
    for (size_t r = 0; r < out.len; r++)
      if (!(out.data[r] == '/' && w > 0 && out.data[w - 1] == '/')) out.data[w++] = out.data[r];
    out.len = w;
  }
  buf_append(&out, path + plen, strlen(path + plen));
  if (out.len != strlen(path) || memcmp(out.data, path, out.len) != 0)
    hmap_set(&st->req_headers, ":path", 5, out.data, out.len);
  buf_free(&out);
  return action;
}

static void strip_port(stream_t *st) {
  const char *a = hmap_get_str(&st->req_headers, ":authority");
  if (a == NULL) return;
  size_t n = strlen(a);
  const char *colon = strrchr(a, ':');
  if (colon == NULL || (a[0] == '[' && a[n - 1] == ']')) return;
  if (a[0] != '[' && memchr(a, ':', (size_t)(colon - a)) != NULL) return;
  for (const char *c = colon + 1; *c; c++)
    if (!isdigit((unsigned char)*c)) return;
  char *host = strndup(a, (size_t)(colon - a));
  hmap_set(&st->req_headers, ":authority", 10, host, strlen(host));
  free(host);
}

/* UUIDRequestIDExtension::set: a new id when there is none, and on an edge
 * request whatever the client sent (preserve_external_request_id is not
 * modelled, so false) (extensions/request_id/uuid/config.cc:14-44). */
static void set_request_id(stream_t *st, int edge) {
  const char *id0 = hmap_get_str(&st->req_headers, "x-request-id");
  if (id0 != NULL && id0[0] && !edge) return;
  uint64_t a = worker_rand(st->w), b = worker_rand(st->w);
  char id[40];
  int n = snprintf(id, sizeof(id), "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff,
                   (unsigned)a & 0xfff, (unsigned)((b >> 48) & 0x3fff) | 0x8000,
                   (unsigned long long)(b & 0xffffffffffffull));
  hmap_set(&st->req_headers, "x-request-id", 12, id, (size_t)n);
}

static size_t count_of(const hmap_t *m, const char *key) {
  size_t n = 0, kl = strlen(key);
  for (size_t i = 0; i < m->n; i++)
    if (m->e[i].klen == kl && strcasecmp(m->e[i].key, key) == 0) n++;
  return n;
}

/* sanitizeTEHeader: TE survives only as "trailers" (conn_manager_utility.cc:326-343). */
static void sanitize_te(hmap_t *h) {
  const char *te = hmap_get_str(h, "te");
  if (te == NULL) return;
  for (const char *s = te;;) {
    const char *comma = strchr(s, ',');
    size_t n = comma ? (size_t)(comma - s) : strlen(s);
    while (n > 0 && (*s == ' ' || *s == '\t')) s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (n == 8 && strncmp(s, "trailers", 8) == 0) {
      hmap_set(h, "te", 2, "trailers", 8);
      return;
    }
    if (comma == NULL) break;
    s = comma + 1;
  }
  hmap_remove(h, "te", 2);
}

/* Utility::isValidRefererValue, the parts that matter here: no fragment,
 * no userinfo in an absolute URL (http/utility.cc:1646-1670). */
static int valid_referer(const char *v) {
  if (strchr(v, '#')) return 0;
  const char *sep = strstr(v, "://");
  if (sep) {
    const char *a = sep + 3, *end = a + strcspn(a, "/?");
    for (const char *p = a; p < end; p++)
      if (*p == '@') return 0;
  }
  return 1;
}

/* cleanInternalHeaders: what a client must not inject; every request is
 * external, as no internal_address_config is modelled (the default treats
 * no address as internal: http/conn_manager_config.h:197-200)
 * (conn_manager_utility.cc:351-392). */
static void clean_internal_headers(hmap_t *h, int edge) {
  static const char *const kEdge[] = {"x-envoy-decorator-operation", "x-envoy-downstream-service-cluster",
                                      "x-envoy-downstream-service-node", "x-envoy-original-path",
                                      "x-envoy-original-host"};
  static const char *const kAll[] = {"x-envoy-retriable-status-codes", "x-envoy-retriable-header-names",
                                     "x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries",
                                     "x-envoy-upstream-alt-stat-name", "x-envoy-upstream-rq-timeout-ms",
                                     "x-envoy-upstream-rq-per-try-timeout-ms", "x-envoy-upstream-rq-timeout-alt-response",
                                     "x-envoy-expected-rq-timeout-ms", "x-envoy-force-trace", "x-envoy-ip-tags",
                                     "x-envoy-original-url", "x-envoy-hedge-on-per-try-timeout"};
  for (size_t i = 0; edge && i < sizeof(kEdge) / sizeof(kEdge[0]); i++) hmap_remove(h, kEdge[i], strlen(kEdge[i]));
  for (size_t i = 0; i < sizeof(kAll) / sizeof(kAll[0]); i++) hmap_remove(h, kAll[i], strlen(kAll[i]));
}

/* ConnectionManagerUtility::mutateRequestHeaders (http/conn_manager_utility.cc:121-320) for a
 * plain-text listener without upgrades: hop-by-hop headers (the codec
 * already left out connection, keep-alive, proxy-connection,
 * transfer-encoding and upgrade), XFF and x-forwarded-proto, :scheme,
 * internal headers, x-envoy-external-address and x-request-id. */
static void mutate_request_headers(stream_t *st) {
  hmap_t *h = &st->req_headers;
  sanitize_te(h);
  hmap_remove(h, "x-envoy-internal", 16);
  const char *referer = hmap_get_str(h, "referer");
  if (referer && (count_of(h, "referer") > 1 || !valid_referer(referer))) hmap_remove(h, "referer", 7);
  int edge = st->chain->use_remote_address;
  char ip[80];
  snprintf(ip, sizeof(ip), "%s", st->peer[0] == '[' ? st->peer + 1 : st->peer);
  char *colon = strrchr(ip, st->peer[0] == '[' ? ']' : ':');
  if (colon) *colon = 0; /* Address::Ip::addressAsString: no port, no brackets */
  if (edge) {
    /* appendXff: "," without a space (http/utility.cc:448-455) */
    const char *xff = hmap_get_str(h, "x-forwarded-for");
    if (xff != NULL) {
      char *v = NULL;
      if (asprintf(&v, "%s,%s", xff, ip) < 0) abort();
      hmap_set(h, "x-forwarded-for", 15, v, strlen(v));
      free(v);
    } else {
      hmap_add(h, "x-forwarded-for", 15, ip, strlen(ip));
    }
  }
  if (edge || hmap_get(h, "x-forwarded-proto", 17) == NULL) hmap_set(h, "x-forwarded-proto", 17, "http", 4);
  if (hmap_get(h, ":scheme", 7) == NULL) {
    /* getScheme: a valid x-forwarded-proto, else the connection's (http) */
    const char *xfp = hmap_get_str(h, "x-forwarded-proto");
    const char *scheme = xfp && (strcasecmp(xfp, "http") == 0 || strcasecmp(xfp, "https") == 0) ? xfp : "http";
    char lower[6];
    size_t n = strlen(scheme);
    for (size_t i = 0; i < n; i++) lower[i] = (char)tolower((unsigned char)scheme[i]);
    hmap_set(h, ":scheme", 7, lower, n);
  }
  clean_internal_headers(h, edge);
  if (edge) hmap_set(h, "x-envoy-external-address", 24, ip, strlen(ip));
  set_request_id(st, edge);
}

int hcm_decode_headers(stream_t *st, int end_stream) {
  (void)end_stream;
  struct dconn *c = st->conn;
  /* HeaderUtility::shouldCloseConnection */
  if (c && !c->p.head.keep_alive) st->drain_on_completion = 1;
  if (st->minor == 0 && !st->chain->accept_http_10) {
    /* ServerConnectionImpl::checkProtocolVersion (http1/codec_impl.cc:1177-1192) */
    if (c) c->close_after = 1;
    stream_local_reply(st, 426, "Upgrade Required", RF_DOWNSTREAM_PROTOCOL_ERROR, "low_version", 0);
    return -1;
  }
  if (st->minor == 0 && st->chain->default_host_for_http_10 &&
      hmap_get(&st->req_headers, ":authority", 10) == NULL)
    hmap_add(&st->req_headers, ":authority", 10, st->chain->default_host_for_http_10,
             strlen(st->chain->default_host_for_http_10));
  if (!st->chain->proxy_100_continue) {
    const char *expect = hmap_get_str(&st->req_headers, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0) {
      /* the HCM answers 100 Continue itself and removes Expect so the
       * upstream does not answer it again (conn_manager_impl.cc:1431-1442) */
      atomic_fetch_add(st->chain->continue_sent, 1);
      if (c) conn_send_100_continue(c);
      hmap_remove(&st->req_headers, "expect", 6);
    }
  }
  if (hmap_get(&st->req_headers, ":authority", 10) == NULL) {
    stream_local_reply(st, 400, "", -1, "missing_host_header", 0);
    return -1;
  }
  const char *path = hmap_get_str(&st->req_headers, ":path");
  if (path == NULL || path[0] == 0) {
    stream_local_reply(st, 404, "", -1, "missing_path_rejected", 0);
    return -1;
  }
  if (path[0] != '/') {
    stream_local_reply(st, 404, "", -1, "absolute_path_rejected", 0);
    return -1;
  }
  int norm = normalize_path(st);
  /* Grpc::Common::hasGrpcContentType: application/grpc, optionally
   * followed by + or ; (grpc/common.cc) */
  const char *ct = hmap_get_str(&st->req_headers, "content-type");
  int grpc = ct && strncmp(ct, "application/grpc", 16) == 0 && (ct[16] == 0 || ct[16] == '+' || ct[16] == ';');
  if (norm < 0 || (norm == 1 && grpc)) {
    /* gRPC clients do not follow redirects: 400 (conn_manager_impl.cc:1497-1506) */
    stream_local_reply(st, 400, "", -1, "path_normalization_failed", 0);
    return -1;
  }
  if (norm == 1) {
    /* 307 to the unescaped path (conn_manager_impl.cc:1507-1516) */
    hmap_t loc;
    hmap_init(&loc);
    const char *np = hmap_get_str(&st->req_headers, ":path");
    hmap_add(&loc, "location", 8, np, strlen(np));
    fm_send_local_reply(st, 307, "", 0, &loc, "path_normalization_failed");
    hmap_free(&loc);
    return -1;
  }
  if (st->chain->strip_any_host_port) strip_port(st);
  mutate_request_headers(st);
  /* snapped_route_config_: the stream keeps the table it started with
   * (http/conn_manager_impl.cc:1390-1405) */
  if (st->chain->inline_rc) {
    st->rc = st->chain->inline_rc;
    routecfg_ref(st->rc);
  } else {
    st->rc = registry_route(st->chain->rds);
  }
  refresh_route(st);
  return 0;
}

/* ---- timers ---- */

static void idle_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  stream_t *st = arg;
  atomic_fetch_add(st->chain->rq_idle_timeout, 1);
  stream_set_flag(st, RF_STREAM_IDLE_TIMEOUT);
  /* maybeRequestTimeoutCode: 504 once the whole request arrived, else 408
   * (http/conn_manager_impl.cc:1061-1095) */
  stream_local_reply(st, st->remote_complete ? 504 : 408, "stream timeout", -1, "stream_idle_timeout", 0);
}

static void request_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  stream_t *st = arg;
  if (st->remote_complete) return;
  atomic_fetch_add(st->chain->rq_timeout, 1);
  stream_local_reply(st, 408, "request timeout", -1, "request_overall_timeout", 0);
}

static void arm(struct event *e, int64_t ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  event_add(e, &tv);
}

void hcm_arm_timers(stream_t *st) {
  st->idle_timer = evtimer_new(st->w->base, idle_timeout, st);
  st->request_timer = evtimer_new(st->w->base, request_timeout, st);
  if (st->idle_timeout_ms > 0) arm(st->idle_timer, st->idle_timeout_ms);
  if (st->chain->request_timeout_ms > 0 && !st->remote_complete) arm(st->request_timer, st->chain->request_timeout_ms);
}

void stream_touch(stream_t *st) {
  /* resetIdleTimer: any activity restarts it (http/conn_manager_impl.cc:1052-1059) */
  if (st->idle_timer == NULL || st->finishing) return;
  if (st->idle_timeout_ms > 0) arm(st->idle_timer, st->idle_timeout_ms);
  else event_del(st->idle_timer);
}

void hcm_disarm_timers(stream_t *st) {
  if (st->idle_timer) {
    event_free(st->idle_timer);
    st->idle_timer = NULL;
  }
  if (st->request_timer) {
    event_free(st->request_timer);
    st->request_timer = NULL;
  }
}

/* ---- end of stream ---- */

void hcm_log(stream_t *st) {
  if (st->chain->nlogs == 0) return;
  fmt_ctx_t c;
  hcm_fmt_ctx(st, &c);
  for (size_t i = 0; i < st->chain->nlogs; i++) accesslog_write(st->chain->logs[i], &c);
}

void hcm_count_response(stream_t *st) {
  int code = st->resp_code;
  chain_t *ch = st->chain;
  if (code >= 500) {
    atomic_fetch_add(&g_stats.downstream_rq_5xx, 1);
    atomic_fetch_add(ch->rq_5xx, 1);
  } else if (code >= 400) {
    atomic_fetch_add(&g_stats.downstream_rq_4xx, 1);
    atomic_fetch_add(ch->rq_4xx, 1);
  } else if (code >= 300) {
    atomic_fetch_add(&g_stats.downstream_rq_3xx, 1);
    atomic_fetch_add(ch->rq_3xx, 1);
  } else if (code >= 200) {
    atomic_fetch_add(&g_stats.downstream_rq_2xx, 1);
    atomic_fetch_add(ch->rq_2xx, 1);
  }
  if (st->down_done && !st->remote_complete) atomic_fetch_add(ch->rq_response_before_rq_complete, 1);
}
