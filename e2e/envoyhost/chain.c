#include "chain.h"

#include "h1parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

/* HttpConnectionManager defaults (http_connection_manager.proto,
 * protocol.proto): 60 KiB and 100 request headers, a 5 minute stream idle
 * timeout, no request or request-headers timeout; 1 MiB connection buffers. */
enum {
  kDefaultMaxHeadersKB = 60,
  kDefaultMaxHeaders = 100,
  kDefaultStreamIdleMs = 5 * 60 * 1000,
  kDefaultBufferLimit = 1024 * 1024,
};

static char *dup_s(const char *s) {
  char *d = strdup(s ? s : "");
  if (d == NULL) abort();
  return d;
}

/* A proto3 JSON enum as its index in names (listed in the enums' order),
 * dflt when unset or unknown. */
static int enum_value(json_t *j, const char *const *names, int dflt) {
  const char *v = json_string_value(j);
  for (int i = 0; v && names[i]; i++)
    if (strcmp(v, names[i]) == 0) return i;
  return dflt;
}

chain_t *chain_parse(json_t *j, fconfig_t *golang, char *err, size_t errlen) {
  chain_t *c = calloc(1, sizeof(*c));
  if (c == NULL) abort();
  atomic_store(&c->refs, 1);
  c->golang = golang;
  c->listener = dup_s(json_string_value(json_object_get(j, "name")));
  c->hash = dup_s(json_string_value(json_object_get(j, "hash")));
  json_t *bl = json_object_get(j, "per_connection_buffer_limit_bytes");
  c->buffer_limit = bl ? (uint32_t)json_integer_value(bl) : kDefaultBufferLimit;
  json_t *h = json_object_get(j, "hcm");
  c->stat_prefix = dup_s(json_string_value(json_object_get(h, "stat_prefix")));
  json_t *kb = json_object_get(h, "max_request_headers_kb");
  c->max_header_bytes = (kb ? (size_t)json_integer_value(kb) : kDefaultMaxHeadersKB) * 1024;
  json_t *common = json_object_get(h, "common_http_protocol_options");
  json_t *mh = json_object_get(common, "max_headers_count");
  c->max_headers = mh ? (size_t)json_integer_value(mh) : kDefaultMaxHeaders;
  static const char *const kUnderscores[] = {"ALLOW", "REJECT_REQUEST", "DROP_HEADER", NULL};
  c->headers_with_underscores =
      enum_value(json_object_get(common, "headers_with_underscores_action"), kUnderscores, H1_UNDERSCORE_ALLOW);
  /* IMPLEMENTATION_SPECIFIC_DEFAULT is KEEP_UNCHANGED unless a runtime key
   * says otherwise (http_connection_manager/config.cc getPathWithEscapedSlashesAction) */
  static const char *const kEscaped[] = {"KEEP_UNCHANGED", "REJECT_REQUEST", "UNESCAPE_AND_REDIRECT", "UNESCAPE_AND_FORWARD", NULL};
  c->escaped_slashes = enum_value(json_object_get(h, "path_with_escaped_slashes_action"), kEscaped, ESCAPED_KEEP);
  static const char *const kServer[] = {"OVERWRITE", "APPEND_IF_ABSENT", "PASS_THROUGH", NULL};
  c->server_header = enum_value(json_object_get(h, "server_header_transformation"), kServer, SERVER_OVERWRITE);
  c->suppress_envoy_headers = json_is_true(json_object_get(h, "router_suppress_envoy_headers"));
  c->stream_idle_timeout_ms = parse_duration_ms(json_object_get(h, "stream_idle_timeout"), kDefaultStreamIdleMs);
  c->request_timeout_ms = parse_duration_ms(json_object_get(h, "request_timeout"), 0);
  c->request_headers_timeout_ms = parse_duration_ms(json_object_get(h, "request_headers_timeout"), 0);
  c->normalize_path = json_is_true(json_object_get(h, "normalize_path"));
  c->merge_slashes = json_is_true(json_object_get(h, "merge_slashes"));
  c->strip_any_host_port = json_is_true(json_object_get(h, "strip_any_host_port"));
  c->use_remote_address = json_is_true(json_object_get(h, "use_remote_address"));
  json_t *h1 = json_object_get(h, "http_protocol_options");
  c->enable_trailers = json_is_true(json_object_get(h1, "enable_trailers"));
  c->accept_http_10 = json_is_true(json_object_get(h1, "accept_http_10"));
  const char *dh = json_string_value(json_object_get(h1, "default_host_for_http_10"));
  if (dh && dh[0]) c->default_host_for_http_10 = dup_s(dh);
  c->proxy_100_continue = json_is_true(json_object_get(h, "proxy_100_continue"));
  const char *rds = json_string_value(json_object_get(h, "rds_route_config_name"));
  if (rds) c->rds = dup_s(rds);
  json_t *rc = json_object_get(h, "route_config");
  if (rc && (c->inline_rc = routecfg_parse(rc, err, errlen)) == NULL) goto fail;
  if (c->rds == NULL && c->inline_rc == NULL) {
    snprintf(err, errlen, "listener %s: the HCM needs rds or route_config", c->listener);
    goto fail;
  }
  if ((c->lr = localreply_parse(json_object_get(h, "local_reply_config"), err, errlen)) == NULL) goto fail;
  json_t *logs = json_object_get(h, "access_log");
  c->logs = calloc(json_array_size(logs) + 1, sizeof(accesslog_t *));
  if (c->logs == NULL) abort();
  for (size_t i = 0; i < json_array_size(logs); i++) {
    accesslog_t *l = accesslog_parse(json_array_get(logs, i), err, errlen);
    if (l == NULL) goto fail;
    c->logs[c->nlogs++] = l;
  }
  json_t *hc = json_object_get(h, "health_check");
  if (hc) {
    json_t *hs = json_object_get(hc, "headers");
    c->has_hc = 1;
    c->hc = calloc(json_array_size(hs) + 1, sizeof(hdrmatch_t));
    if (c->hc == NULL) abort();
    for (size_t i = 0; i < json_array_size(hs); i++) {
      if (hdrmatch_parse(json_array_get(hs, i), &c->hc[i], err, errlen) != 0) goto fail;
      c->nhc++;
    }
  }
  json_t *g = json_object_get(j, "golang");
  if (g) {
    c->has_golang = 1;
    const char *ecds = json_string_value(json_object_get(g, "ecds"));
    if (ecds) c->golang_ecds = dup_s(ecds);
    else if (c->golang == NULL) {
      snprintf(err, errlen, "listener %s: inline golang filter without a config", c->listener);
      goto fail;
    }
  }
  const char *p = c->stat_prefix;
#define C(field, stat) c->field = stat_counter("http.%s." stat, p)
  C(rq_total, "downstream_rq_total");
  C(rq_2xx, "downstream_rq_2xx");
  C(rq_3xx, "downstream_rq_3xx");
  C(rq_4xx, "downstream_rq_4xx");
  C(rq_5xx, "downstream_rq_5xx");
  C(rq_rx_reset, "downstream_rq_rx_reset");
  C(rq_response_before_rq_complete, "downstream_rq_response_before_rq_complete");
  C(cx_protocol_error, "downstream_cx_protocol_error");
  C(rq_timeout, "downstream_rq_timeout");
  C(rq_idle_timeout, "downstream_rq_idle_timeout");
  C(continue_sent, "downstream_rq_100_continue");
  C(cx_drain_close, "downstream_cx_drain_close");
#undef C
  return c;
fail:
  chain_unref(c);
  return NULL;
}

void chain_ref(chain_t *c) { atomic_fetch_add(&c->refs, 1); }

void chain_unref(chain_t *c) {
  if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1) return;
  fconfig_unref(c->golang);
  routecfg_unref(c->inline_rc);
  for (size_t i = 0; i < c->nhc; i++) hdrmatch_free(&c->hc[i]);
  free(c->hc);
  localreply_free(c->lr);
  for (size_t i = 0; i < c->nlogs; i++) accesslog_free(c->logs[i]);
  free(c->logs);
  free(c->listener);
  free(c->hash);
  free(c->stat_prefix);
  free(c->rds);
  free(c->golang_ecds);
  free(c->default_host_for_http_10);
  free(c);
}
