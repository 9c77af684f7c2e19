/* The router filter (source/common/router/router.cc): the route the HCM
 * resolves (re-matched after ClearRouteCache), direct responses, the
 * cluster's host selection, request header mutations and rewrites, the
 * upstream request with the route timeout, and retries with jittered
 * back-off that re-pick a host each time and stop once response headers
 * went downstream (retry_state_impl.cc). The request body is kept for
 * retries up to the stream's buffer limit, as Envoy buffers it. */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "host.h"
#include "log.h"
#include "registry.h"
#include "respflags.h"
#include "stream.h"
#include "upstream.h"

typedef struct router {
  cluster_t *cluster;
  const route_t *route;
  const retry_policy_t *retry;
  host_t *host;
  upconn_t *up;
  pick_ctx_t pick;
  obuf_t body; /* the request body so far, for retries */
  int body_overflow, req_end, headers_sent_up, resp_forwarded, is_retry;
  int retries_left, retry_pending, retry_reserved;
  int64_t backoff_ms;
  struct event *retry_timer, *global_timer;
  uint64_t attempt_start_ns;
  long long cl_expected;
  uint64_t cl_sent;
  int active; /* counted in upstream_rq_active */
} router_t;

static const upreq_cb_t kUpCallbacks;

static router_t *rt_of(stream_t *st) {
  if (st->router == NULL) {
    st->router = calloc(1, sizeof(router_t));
    if (st->router == NULL) abort();
    obuf_init(&st->router->body);
    st->router->cl_expected = -1;
  }
  return st->router;
}

static void release_attempt(stream_t *st) {
  router_t *r = st->router;
  if (r->active) {
    r->active = 0;
    atomic_fetch_sub(r->cluster->st->rq_active, 1);
    if (r->host) atomic_fetch_sub(&r->host->active_rq, 1);
  }
}

static void release_retry(router_t *r) {
  if (r->retry_reserved) {
    r->retry_reserved = 0;
    atomic_fetch_sub(&r->cluster->st->active_retries, 1);
  }
}

void router_cancel(stream_t *st) {
  router_t *r = st->router;
  if (r == NULL) return;
  int had_attempt = r->up != NULL;
  if (r->up) {
    up_cancel(r->up);
    r->up = NULL;
  }
  release_attempt(st);
  if (r->retry_timer) event_del(r->retry_timer);
  if (r->global_timer) event_del(r->global_timer);
  r->retry_pending = 0;
  if (r->cluster) release_retry(r);
  /* the attempt's stream reference; the caller still holds its own */
  if (had_attempt) stream_unref(st);
}

void router_free(stream_t *st) {
  router_t *r = st->router;
  if (r == NULL) return;
  router_cancel(st);
  if (r->retry_timer) event_free(r->retry_timer);
  if (r->global_timer) event_free(r->global_timer);
  obuf_free(&r->body);
  pick_ctx_free(&r->pick);
  cluster_unref(r->cluster);
  free(r);
  st->router = NULL;
}

/* ---- header mutations ---- */

static void apply_request_mutations(stream_t *st, const route_t *route) {
  fmt_ctx_t c;
  hcm_fmt_ctx(st, &c);
  /* RouteEntryImplBase::finalizeRequestHeaders: route, then virtual host,
   * then route configuration (router/config_impl.cc:987-1015) */
  hmuts_apply(&route->req_headers, &st->req_headers, &c);
  if (st->vhost) hmuts_apply(&st->vhost->req_headers, &st->req_headers, &c);
  if (st->rc) hmuts_apply(&st->rc->req_headers, &st->req_headers, &c);
  if (route->prefix_rewrite && route->path_kind != PATH_EXACT) {
    const char *path = hmap_get_str(&st->req_headers, ":path");
    size_t l = strlen(route->path);
    if (path && strlen(path) >= l) {
      char *np = NULL;
      if (asprintf(&np, "%s%s", route->prefix_rewrite, path + l) < 0) abort();
      /* prefix_rewrite keeps the original path in x-envoy-original-path
       * (router/config_impl.cc:930-955) */
      hmap_set(&st->req_headers, "x-envoy-original-path", 21, path, strlen(path));
      hmap_set(&st->req_headers, ":path", 5, np, strlen(np));
      free(np);
    }
  }
  if (route->host_rewrite) {
    /* finalizeHostHeader -> Utility::updateAuthority keeps the client's host
     * in x-envoy-original-host (router/config_impl.cc:958-985,
     * http/utility.cc:464-471) */
    const char *host = hmap_get_str(&st->req_headers, ":authority");
    if (host && host[0]) hmap_set(&st->req_headers, "x-envoy-original-host", 21, host, strlen(host));
    hmap_set(&st->req_headers, ":authority", 10, route->host_rewrite, strlen(route->host_rewrite));
  }
  if (route->timeout_ms > 0 && !st->chain->suppress_envoy_headers) {
    /* FilterUtility::finalTimeout tells the upstream its deadline in
     * x-envoy-expected-rq-timeout-ms unless the router suppresses Envoy's
     * headers (router/router.cc:180-300, 643) */
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)route->timeout_ms);
    hmap_set(&st->req_headers, "x-envoy-expected-rq-timeout-ms", 30, tmp, (size_t)n);
  }
}

static void apply_response_mutations(stream_t *st) {
  fmt_ctx_t c;
  hcm_fmt_ctx(st, &c);
  const route_t *route = st->router->route;
  hmuts_apply(&route->resp_headers, &st->resp_headers, &c);
  if (st->vhost) hmuts_apply(&st->vhost->resp_headers, &st->resp_headers, &c);
  if (st->rc) hmuts_apply(&st->rc->resp_headers, &st->resp_headers, &c);
}

/* ---- credential injector (an upstream HTTP filter on the cluster) ---- */

static int inject_credential(stream_t *st, cluster_t *c, hmap_t *h) {
  credinject_t *ci = c->cred;
  if (ci == NULL) return 0;
  size_t kl = strlen(ci->header);
  /* GenericCredentialInjector::inject: a header the client sent stays
   * unless overwrite; an empty or missing secret fails the injection
   * (http/injected_credentials/generic/generic_impl.cc:11-30) */
  if (!ci->overwrite && hmap_get(h, ci->header, kl) != NULL) return 0;
  buf_t secret;
  buf_init(&secret);
  int found = registry_secret(ci->secret, &secret) && secret.len > 0;
  if (!found) {
    buf_free(&secret);
    if (ci->allow_missing) return 0;
    /* CredentialInjectorFilter::decodeHeaders: 401 unless
     * allow_request_without_credential
     * (filters/http/credential_injector/credential_injector_filter.cc:18-56) */
    stream_local_reply(st, 401, "Failed to inject credential.", -1, "failed_to_inject_credential", 0);
    return -1;
  }
  buf_t v;
  buf_init(&v);
  buf_append(&v, ci->prefix, strlen(ci->prefix));
  buf_append(&v, secret.data, secret.len);
  hmap_set(h, ci->header, kl, v.data, v.len);
  buf_free(&v);
  buf_free(&secret);
  return 0;
}

/* ---- attempts ---- */

static void on_global_timeout(evutil_socket_t fd, short what, void *arg);
static void on_retry_timer(evutil_socket_t fd, short what, void *arg);

static void start_global_timer(stream_t *st) {
  router_t *r = st->router;
  if (r->route->timeout_ms <= 0 || r->global_timer != NULL) return;
  r->global_timer = evtimer_new(st->w->base, on_global_timeout, st);
  struct timeval tv = {r->route->timeout_ms / 1000, (r->route->timeout_ms % 1000) * 1000};
  event_add(r->global_timer, &tv);
}

static void no_healthy_upstream(stream_t *st) {
  stream_local_reply(st, 503, "no healthy upstream", RF_NO_HEALTHY_UPSTREAM, "no_healthy_upstream", 1);
}

static void send_attempt(stream_t *st) {
  router_t *r = st->router;
  st->attempt_count++;
  st->transport_failure[0] = 0; /* the upstream info is the latest attempt's */
  r->host = cluster_pick(r->cluster, &r->pick);
  if (r->host == NULL) {
    no_healthy_upstream(st);
    return;
  }
  snprintf(st->upstream_host, sizeof(st->upstream_host), "%s", r->host->addr);
  hmap_t up;
  hmap_init(&up);
  for (size_t i = 0; i < st->req_headers.n; i++)
    hmap_add(&up, st->req_headers.e[i].key, st->req_headers.e[i].klen, st->req_headers.e[i].value, st->req_headers.e[i].vlen);
  if (inject_credential(st, r->cluster, &up) != 0) {
    hmap_free(&up);
    return;
  }
  r->up = up_start(st->w, r->cluster, r->host, &kUpCallbacks, st);
  if (r->up == NULL) {
    hmap_free(&up);
    stream_local_reply(st, 503, "upstream connect error or disconnect/reset before headers. reset reason: overflow",
                       RF_UPSTREAM_OVERFLOW, "upstream_reset_before_response_started{overflow}", 1);
    return;
  }
  st->refs++; /* held until the attempt ends or is cancelled */
  r->active = 1;
  atomic_fetch_add(r->cluster->st->rq_total, 1);
  atomic_fetch_add(r->cluster->st->rq_active, 1);
  atomic_fetch_add(&r->host->active_rq, 1);
  atomic_fetch_add(&g_stats.upstream_rq_total, 1);
  r->attempt_start_ns = now_ns();
  int end = r->req_end && r->body.len == 0 && st->req_trailers == NULL;
  up_send_headers(r->up, &up, end, st->head_request);
  hmap_free(&up);
  r->headers_sent_up = 1;
  if (r->body.len > 0 || (r->req_end && !end && st->req_trailers == NULL))
    up_send_data(r->up, &r->body, r->req_end && st->req_trailers == NULL);
  if (r->req_end && st->req_trailers) up_send_trailers(r->up, st->req_trailers);
}

/* An attempt ended without a response forwarded: retry, or give up. */
static void attempt_ended(stream_t *st) {
  router_t *r = st->router;
  r->up = NULL;
  release_attempt(st);
  release_retry(r);
}

/* RetryStateImpl::shouldRetry: the retry limit (URX once exhausted), then
 * the retries circuit breaker (router/retry_state_impl.cc:269-300). */
static int may_retry(stream_t *st) {
  router_t *r = st->router;
  if (r->retry == NULL || !r->retry->set || r->body_overflow) return 0;
  if (r->retries_left <= 0) {
    stream_set_flag(st, RF_UPSTREAM_RETRY_LIMIT_EXCEEDED);
    return 0;
  }
  if (atomic_load(&r->cluster->st->active_retries) >= r->cluster->max_retries) {
    atomic_fetch_add(r->cluster->st->rq_retry_overflow, 1);
    return 0;
  }
  r->retries_left--;
  return 1;
}

static void schedule_retry(stream_t *st) {
  router_t *r = st->router;
  atomic_fetch_add(&r->cluster->st->active_retries, 1);
  r->retry_reserved = 1;
  atomic_fetch_add(r->cluster->st->rq_retry, 1);
  /* JitteredExponentialBackOffStrategy: random in [0, interval), interval
   * doubling to max (common/common/backoff_strategy.cc:13-19), base 25 ms and
   * max 10x base (router/retry_state_impl.cc:87-101) */
  if (r->backoff_ms <= 0) r->backoff_ms = r->retry->base_ms;
  int64_t wait = r->backoff_ms > 0 ? (int64_t)(worker_rand(st->w) % (uint64_t)r->backoff_ms) : 0;
  r->backoff_ms = r->backoff_ms * 2 > r->retry->max_ms ? r->retry->max_ms : r->backoff_ms * 2;
  if (r->retry_timer == NULL) r->retry_timer = evtimer_new(st->w->base, on_retry_timer, st);
  r->retry_pending = 1;
  r->is_retry = 1;
  struct timeval tv = {wait / 1000, (wait % 1000) * 1000};
  event_add(r->retry_timer, &tv);
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  stream_t *st = arg;
  router_t *r = st->router;
  r->retry_pending = 0;
  if (st->decode_aborted || st->finishing) return;
  send_attempt(st);
}

static int status_retriable(const retry_policy_t *p, int status) {
  if (p == NULL || !p->set) return 0;
  if ((p->on & RETRY_5XX) && status >= 500) return 1;
  if ((p->on & RETRY_GATEWAY_ERROR) && (status == 502 || status == 503 || status == 504)) return 1;
  if ((p->on & RETRY_RETRIABLE_4XX) && status == 409) return 1;
  if (p->on & RETRY_RETRIABLE_STATUS_CODES)
    for (size_t i = 0; i < p->ncodes; i++)
      if (p->codes[i] == status) return 1;
  return 0;
}

static int reset_retriable(const retry_policy_t *p, int reason) {
  if (p == NULL || !p->set || reason == UP_OVERFLOW) return 0;
  if (p->on & (RETRY_5XX | RETRY_GATEWAY_ERROR | RETRY_RESET)) return 1;
  if ((p->on & RETRY_CONNECT_FAILURE) && (reason == UP_CONNECT_FAILURE || reason == UP_CONNECT_TIMEOUT)) return 1;
  return 0;
}

/* ---- upstream callbacks ---- */

static void count_status(cluster_t *c, int status) {
  if (status >= 500) atomic_fetch_add(c->st->rq_5xx, 1);
  else if (status >= 400) atomic_fetch_add(c->st->rq_4xx, 1);
  else if (status >= 200 && status < 300) atomic_fetch_add(c->st->rq_2xx, 1);
}

static void up_headers(void *arg, int status, hmap_t *h, int end_stream) {
  stream_t *st = arg;
  router_t *r = st->router;
  snprintf(st->upstream_local, sizeof(st->upstream_local), "%s", up_local_address(r->up));
  count_status(r->cluster, status);
  if (status_retriable(r->retry, status) && may_retry(st)) {
    /* resetting the upstream request closes its HTTP/1 connection */
    up_cancel(r->up);
    attempt_ended(st);
    stream_unref(st);
    schedule_retry(st);
    return;
  }
  if (r->is_retry) atomic_fetch_add(r->cluster->st->rq_retry_success, 1);
  r->resp_forwarded = 1;
  if (end_stream) {
    attempt_ended(st);
  }
  hmap_free(&st->resp_headers);
  hmap_init(&st->resp_headers);
  for (size_t i = 0; i < h->n; i++) hmap_add(&st->resp_headers, h->e[i].key, h->e[i].klen, h->e[i].value, h->e[i].vlen);
  apply_response_mutations(st);
  if (!st->chain->suppress_envoy_headers) {
    /* router.cc:1988-1994 */
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)((now_ns() - r->attempt_start_ns) / 1000000));
    hmap_set(&st->resp_headers, "x-envoy-upstream-service-time", 29, tmp, (size_t)n);
  }
  snprintf(st->details, sizeof(st->details), "via_upstream");
  if (r->global_timer && end_stream) event_del(r->global_timer);
  fm_encode_headers(st, end_stream);
  if (end_stream) stream_unref(st);
}

static void up_data(void *arg, const char *p, size_t n, int end_stream) {
  stream_t *st = arg;
  router_t *r = st->router;
  if (end_stream) {
    attempt_ended(st);
    if (r->global_timer) event_del(r->global_timer);
  }
  obuf_t b; /* the upstream codec's body buffer */
  obuf_init(&b);
  obuf_add(&b, p, n);
  if (!st->finishing && !st->down_done) fm_encode_data(st, &b, end_stream);
  obuf_free(&b);
  if (end_stream) stream_unref(st);
}

static void up_trailers(void *arg, hmap_t *t) {
  stream_t *st = arg;
  router_t *r = st->router;
  attempt_ended(st);
  if (r->global_timer) event_del(r->global_timer);
  st->resp_trailers = calloc(1, sizeof(hmap_t));
  if (st->resp_trailers == NULL) abort();
  for (size_t i = 0; i < t->n; i++) hmap_add(st->resp_trailers, t->e[i].key, t->e[i].klen, t->e[i].value, t->e[i].vlen);
  if (!st->finishing && !st->down_done) fm_encode_trailers(st);
  stream_unref(st);
}

/* Http::Utility::resetReasonToString (common/http/utility.cc:1163-1196) and
 * Filter::streamResetReasonToResponseFlag (router/router.cc:1745-1771), by
 * UP_* reason. */
static const char *const kResetReason[] = {"remote connection failure", "connection timeout", "connection termination",
                                           "protocol error", "overflow"};
static const int kResetFlag[] = {RF_UPSTREAM_CONNECTION_FAILURE, RF_UPSTREAM_CONNECTION_FAILURE,
                                 RF_UPSTREAM_CONNECTION_TERMINATION, RF_UPSTREAM_PROTOCOL_ERROR, RF_UPSTREAM_OVERFLOW};

/* Filter::onUpstreamReset's details: EarlyUpstreamReset or LateUpstreamReset
 * ("upstream_reset_{before,after}_response_started", stream_info.h:217-222)
 * with {reason[|transport failure reason]}, spaces replaced by '_'
 * (router/router.cc:1706-1711). A refused connection's transport failure
 * reason is the socket's delayed_connect_error. */
static void reset_details(char *out, size_t n, int reason, int late) {
  const char *basic = late ? "upstream_reset_after_response_started" : "upstream_reset_before_response_started";
  if (reason == UP_CONNECT_FAILURE)
    snprintf(out, n, "%s{remote_connection_failure|delayed_connect_error:_Connection_refused}", basic);
  else {
    snprintf(out, n, "%s{%s}", basic, kResetReason[reason]);
    for (char *c = out; *c; c++)
      if (*c == ' ') *c = '_';
  }
}

static void up_reset(void *arg, int reason, int after_headers) {
  stream_t *st = arg;
  router_t *r = st->router;
  attempt_ended(st);
  atomic_fetch_add(&g_stats.upstream_rq_failed, 1);
  if (r->resp_forwarded || after_headers) {
    /* a reset after the response started downstream is never retried
     * (router/router.cc:1574-1580): onUpstreamAbort sets the flag, and
     * sendLocalReply records the details, replacing via_upstream
     * (http/filter_manager.cc:1046), before it resets the stream, whose
     * response headers went out (filter_manager.cc:1094-1101) */
    stream_set_flag(st, kResetFlag[reason]);
    reset_details(st->details, sizeof(st->details), reason, 1);
    stream_reset(st, st->details);
    stream_unref(st);
    return;
  }
  if (reset_retriable(r->retry, reason) && may_retry(st)) {
    schedule_retry(st);
    stream_unref(st);
    return;
  }
  /* Filter::onUpstreamReset: 503 (502 for a protocol error) with the reason
   * (router/router.cc:1631-1712) */
  char body[256], details[256];
  snprintf(body, sizeof(body), "upstream connect error or disconnect/reset before headers. %sreset reason: %s",
           r->is_retry ? "retried and the latest " : "", kResetReason[reason]);
  if (reason == UP_CONNECT_FAILURE)
    /* the connection pool's transport failure reason, which the details
     * carry sanitized (conn_pool_base.cc, router.cc onUpstreamReset) */
    snprintf(st->transport_failure, sizeof(st->transport_failure), "delayed connect error: Connection refused");
  reset_details(details, sizeof(details), reason, 0);
  stream_local_reply(st, reason == UP_PROTOCOL_ERROR ? 502 : 503, body, kResetFlag[reason], details, 1);
  stream_unref(st);
}

static const upreq_cb_t kUpCallbacks = {up_headers, up_data, up_trailers, up_reset};

static void on_global_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  stream_t *st = arg;
  router_t *r = st->router;
  atomic_fetch_add(r->cluster->st->rq_timeout, 1);
  stream_set_flag(st, RF_UPSTREAM_REQUEST_TIMEOUT);
  if (r->resp_forwarded) {
    stream_reset(st, "upstream_response_timeout");
    return;
  }
  /* Filter::onResponseTimeout: 504 upstream request timeout
   * (router/router.cc:1352-1370, 1540-1545) */
  stream_local_reply(st, 504, "upstream request timeout", -1, "upstream_response_timeout", 1);
}

/* ---- the router's decoder callbacks ---- */

static void request_complete(stream_t *st) {
  router_t *r = st->router;
  r->req_end = 1;
  start_global_timer(st);
}

void router_headers(stream_t *st, int end_stream) {
  router_t *r = rt_of(st);
  if (r->route != NULL) return; /* already routed */
  const route_t *route = hcm_route(st);
  if (route == NULL) {
    /* Filter::decodeHeaders: no route, 404 NR (router/router.cc:505-516) */
    stream_local_reply(st, 404, "", RF_NO_ROUTE_FOUND, "route_not_found", 0);
    return;
  }
  r->route = route;
  if (route->action == ACTION_DIRECT) {
    stream_local_reply(st, route->direct_status, route->direct_body.data ? route->direct_body.data : "", -1,
                       "direct_response", 1);
    return;
  }
  snprintf(st->cluster_name, sizeof(st->cluster_name), "%s", route->cluster);
  r->cluster = registry_cluster(route->cluster);
  if (r->cluster == NULL) {
    /* cluster_not_found_response_code, 503 by default (router/router.cc:566-576) */
    stream_local_reply(st, 503, "", RF_NO_CLUSTER_FOUND, "cluster_not_found", 1);
    return;
  }
  /* max_requests: the pool fails the stream with Overflow, UO
   * (common/conn_pool/conn_pool_base.cc:242-250) */
  if (atomic_load(r->cluster->st->rq_active) >= r->cluster->max_requests) {
    atomic_fetch_add(r->cluster->st->rq_pending_overflow, 1);
    stream_local_reply(st, 503, "upstream connect error or disconnect/reset before headers. reset reason: overflow",
                       RF_UPSTREAM_OVERFLOW, "upstream_reset_before_response_started{overflow}", 1);
    return;
  }
  r->retry = route->retry.set ? &route->retry : st->vhost && st->vhost->retry.set ? &st->vhost->retry : NULL;
  r->retries_left = r->retry ? r->retry->num_retries : 0;
  r->pick.headers = &st->req_headers;
  r->pick.md = &st->md;
  r->pick.override_host = st->override_host;
  r->pick.override_strict = st->override_strict;
  r->pick.rng = worker_rand(st->w);
  apply_request_mutations(st, route);
  const char *cl = hmap_get_str(&st->req_headers, "content-length");
  if (cl) r->cl_expected = strtoll(cl, NULL, 10);
  if (end_stream) request_complete(st);
  send_attempt(st);
}

static int check_content_length(stream_t *st, int end_stream) {
  router_t *r = st->router;
  if (r->cl_expected < 0) return 0;
  if ((long long)r->cl_sent <= r->cl_expected && (!end_stream || (long long)r->cl_sent == r->cl_expected)) return 0;
  /* Envoy would send the stale length and corrupt the upstream's view of
   * the request; fail loudly instead so filter bugs show in tests */
  atomic_fetch_add(&g_stats.content_length_mismatch, 1);
  hlog(LOG_ERROR, "request content-length %lld does not match the %llu body bytes after the filter", r->cl_expected,
       (unsigned long long)r->cl_sent);
  stream_local_reply(st, 500, "envoyhost: content-length does not match the body the filter produced", -1,
                     "envoyhost_content_length_mismatch", 0);
  return -1;
}

void router_data(stream_t *st, obuf_t *data, int end_stream) {
  router_t *r = st->router;
  if (r == NULL || r->cluster == NULL || st->decode_aborted) return;
  r->cl_sent += data->len;
  if (check_content_length(st, end_stream) != 0) return;
  if (r->retry != NULL && !r->body_overflow) {
    if (r->body.len + data->len > st->buffer_limit) {
      /* over the buffer limit the router stops buffering: no more retries */
      r->body_overflow = 1;
      obuf_free(&r->body);
    } else {
      /* Router::decodeData copies what it buffers for a retry */
      for (size_t i = 0; i < data->n; i++) {
        const char *p;
        size_t n = obuf_slice(data, i, &p);
        obuf_add(&r->body, p, n);
      }
    }
  }
  if (end_stream) request_complete(st);
  if (r->up != NULL) up_send_data(r->up, data, end_stream);
}

void router_trailers(stream_t *st) {
  router_t *r = st->router;
  if (r == NULL || r->cluster == NULL || st->decode_aborted) return;
  if (check_content_length(st, 1) != 0) return;
  request_complete(st);
  if (r->up != NULL) up_send_trailers(r->up, st->req_trailers);
}
