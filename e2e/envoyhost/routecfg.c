#include "routecfg.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "b64.h"

/* RouteAction.timeout default (api/envoy/config/route/v3/route_components.proto). */
enum { kDefaultRouteTimeoutMs = 15000 };
/* RetryPolicy back-off defaults: base 25 ms, max 10x base (router/retry_state_impl.cc). */
enum { kDefaultBackoffBaseMs = 25 };

static char *dup_s(const char *s) {
  char *d = strdup(s ? s : "");
  if (d == NULL) abort();
  return d;
}

int64_t parse_duration_ms(json_t *j, int64_t dflt) {
  /* proto3 JSON Duration: "1.5s" */
  const char *s = json_string_value(j);
  if (s == NULL) return dflt;
  double secs = strtod(s, NULL);
  return (int64_t)(secs * 1000.0 + 0.5);
}

static int check_keys(json_t *o, const char *what, const char *const *allowed, char *err, size_t errlen) {
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    size_t i;
    for (i = 0; allowed[i] != NULL; i++)
      if (strcmp(k, allowed[i]) == 0) break;
    if (allowed[i] == NULL) {
      snprintf(err, errlen, "%s.%s is not modelled by envoyhost", what, k);
      return -1;
    }
  }
  return 0;
}

static int parse_retry(json_t *j, retry_policy_t *r, char *err, size_t errlen) {
  static const char *const keys[] = {"retry_on", "num_retries", "per_try_timeout", "retriable_status_codes",
                                     "retry_back_off", NULL};
  memset(r, 0, sizeof(*r));
  if (j == NULL) return 0;
  if (check_keys(j, "RetryPolicy", keys, err, errlen) != 0) return -1;
  r->set = 1;
  r->num_retries = 1; /* num_retries defaults to 1 */
  json_t *n = json_object_get(j, "num_retries");
  if (n) r->num_retries = (int)json_integer_value(n);
  const char *on = json_string_value(json_object_get(j, "retry_on"));
  static const struct { const char *name; unsigned bit; } kOn[] = {
      {"5xx", RETRY_5XX}, {"gateway-error", RETRY_GATEWAY_ERROR}, {"connect-failure", RETRY_CONNECT_FAILURE},
      {"reset", RETRY_RESET}, {"retriable-status-codes", RETRY_RETRIABLE_STATUS_CODES},
      {"refused-stream", RETRY_REFUSED_STREAM}, {"retriable-4xx", RETRY_RETRIABLE_4XX},
      {"reset-before-request", RETRY_RESET_BEFORE_REQUEST}};
  char *copy = dup_s(on), *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ') tok++;
    size_t i;
    for (i = 0; i < sizeof(kOn) / sizeof(kOn[0]); i++)
      if (strcmp(tok, kOn[i].name) == 0) break;
    if (i == sizeof(kOn) / sizeof(kOn[0])) {
      snprintf(err, errlen, "RetryPolicy.retry_on %s is not modelled by envoyhost", tok);
      free(copy);
      return -1;
    }
    r->on |= kOn[i].bit;
  }
  free(copy);
  json_t *codes = json_object_get(j, "retriable_status_codes");
  r->ncodes = json_array_size(codes);
  if (r->ncodes) {
    r->codes = calloc(r->ncodes, sizeof(int));
    if (r->codes == NULL) abort();
    for (size_t i = 0; i < r->ncodes; i++) r->codes[i] = (int)json_integer_value(json_array_get(codes, i));
  }
  r->per_try_timeout_ms = parse_duration_ms(json_object_get(j, "per_try_timeout"), 0);
  json_t *bo = json_object_get(j, "retry_back_off");
  r->base_ms = parse_duration_ms(json_object_get(bo, "base_interval"), kDefaultBackoffBaseMs);
  r->max_ms = parse_duration_ms(json_object_get(bo, "max_interval"), 10 * r->base_ms);
  return 0;
}

static int64_t buffer_limit(json_t *o) {
  /* request_body_buffer_limit takes precedence over the legacy field (config_impl.cc:461-485) */
  json_t *v = json_object_get(o, "request_body_buffer_limit");
  if (v == NULL) v = json_object_get(o, "per_request_buffer_limit_bytes");
  if (v == NULL) return -1;
  if (json_is_string(v)) return strtoll(json_string_value(v), NULL, 10);
  return json_integer_value(v);
}

static int parse_golang(json_t *g, rplugin_t **out, char *err, size_t errlen) {
  if (g == NULL) return 0;
  size_t n = 0;
  unsigned char *any = b64_decode(json_string_value(json_object_get(g, "config")), &n);
  if (any == NULL) {
    snprintf(err, errlen, "golang_per_route.config is not base64");
    return -1;
  }
  *out = rplugin_create(json_string_value(json_object_get(g, "plugin")), any, n, err, errlen);
  free(any);
  return *out ? 0 : -1;
}

static int parse_route(json_t *j, route_t *r, char *err, size_t errlen) {
  static const char *const keys[] = {"name", "match", "route", "direct_response", "request_headers_to_add",
                                     "request_headers_to_remove", "response_headers_to_add",
                                     "response_headers_to_remove", "per_request_buffer_limit_bytes",
                                     "request_body_buffer_limit", "golang_per_route", NULL};
  static const char *const match_keys[] = {"prefix", "path", "path_separated_prefix", "case_sensitive", "headers",
                                           NULL};
  static const char *const action_keys[] = {"cluster", "prefix_rewrite", "host_rewrite_literal", "timeout",
                                            "idle_timeout", "retry_policy", NULL};
  if (check_keys(j, "Route", keys, err, errlen) != 0) return -1;
  r->name = dup_s(json_string_value(json_object_get(j, "name")));
  json_t *m = json_object_get(j, "match");
  if (check_keys(m, "RouteMatch", match_keys, err, errlen) != 0) return -1;
  json_t *cs = json_object_get(m, "case_sensitive");
  r->case_sensitive = cs == NULL || json_is_true(cs);
  if (json_object_get(m, "prefix")) {
    r->path_kind = PATH_PREFIX;
    r->path = dup_s(json_string_value(json_object_get(m, "prefix")));
  } else if (json_object_get(m, "path")) {
    r->path_kind = PATH_EXACT;
    r->path = dup_s(json_string_value(json_object_get(m, "path")));
  } else if (json_object_get(m, "path_separated_prefix")) {
    r->path_kind = PATH_SEPARATED_PREFIX;
    r->path = dup_s(json_string_value(json_object_get(m, "path_separated_prefix")));
  } else {
    snprintf(err, errlen, "route %s: RouteMatch needs prefix, path or path_separated_prefix", r->name);
    return -1;
  }
  json_t *hs = json_object_get(m, "headers");
  r->nheaders = json_array_size(hs);
  if (r->nheaders) {
    r->headers = calloc(r->nheaders, sizeof(hdrmatch_t));
    if (r->headers == NULL) abort();
  }
  for (size_t i = 0; i < r->nheaders; i++)
    if (hdrmatch_parse(json_array_get(hs, i), &r->headers[i], err, errlen) != 0) return -1;
  json_t *a = json_object_get(j, "route"), *d = json_object_get(j, "direct_response");
  if (a) {
    if (check_keys(a, "RouteAction", action_keys, err, errlen) != 0) return -1;
    r->action = ACTION_ROUTE;
    r->cluster = dup_s(json_string_value(json_object_get(a, "cluster")));
    if (json_object_get(a, "prefix_rewrite")) r->prefix_rewrite = dup_s(json_string_value(json_object_get(a, "prefix_rewrite")));
    if (json_object_get(a, "host_rewrite_literal"))
      r->host_rewrite = dup_s(json_string_value(json_object_get(a, "host_rewrite_literal")));
    r->timeout_ms = parse_duration_ms(json_object_get(a, "timeout"), kDefaultRouteTimeoutMs);
    r->idle_timeout_ms = parse_duration_ms(json_object_get(a, "idle_timeout"), -1);
    if (parse_retry(json_object_get(a, "retry_policy"), &r->retry, err, errlen) != 0) return -1;
  } else if (d) {
    r->action = ACTION_DIRECT;
    r->direct_status = (int)json_integer_value(json_object_get(d, "status"));
    json_t *body = json_object_get(d, "body");
    if (body) {
      const char *s = json_string_value(json_object_get(body, "inline_string"));
      const char *bytes = json_string_value(json_object_get(body, "inline_bytes"));
      if (s) buf_append(&r->direct_body, s, strlen(s));
      else if (bytes) {
        size_t n = 0;
        unsigned char *raw = b64_decode(bytes, &n);
        if (raw) buf_append(&r->direct_body, raw, n);
        free(raw);
      } else {
        snprintf(err, errlen, "route %s: direct_response body: only inline_string/inline_bytes are modelled", r->name);
        return -1;
      }
    }
  } else {
    snprintf(err, errlen, "route %s: only route and direct_response actions are modelled by envoyhost", r->name);
    return -1;
  }
  if (hmuts_parse(json_object_get(j, "request_headers_to_add"), json_object_get(j, "request_headers_to_remove"),
                  &r->req_headers, err, errlen) != 0 ||
      hmuts_parse(json_object_get(j, "response_headers_to_add"), json_object_get(j, "response_headers_to_remove"),
                  &r->resp_headers, err, errlen) != 0)
    return -1;
  r->body_buffer_limit = buffer_limit(j);
  return parse_golang(json_object_get(j, "golang_per_route"), &r->golang, err, errlen);
}

static void route_free(route_t *r) {
  free(r->name);
  free(r->path);
  for (size_t i = 0; i < r->nheaders; i++) hdrmatch_free(&r->headers[i]);
  free(r->headers);
  free(r->cluster);
  free(r->prefix_rewrite);
  free(r->host_rewrite);
  free(r->retry.codes);
  buf_free(&r->direct_body);
  hmuts_free(&r->req_headers);
  hmuts_free(&r->resp_headers);
  rplugin_free(r->golang);
}

static int parse_vhost(json_t *j, vhost_t *vh, char *err, size_t errlen) {
  static const char *const keys[] = {"name", "domains", "routes", "request_headers_to_add",
                                     "request_headers_to_remove", "response_headers_to_add",
                                     "response_headers_to_remove", "retry_policy", "per_request_buffer_limit_bytes",
                                     "request_body_buffer_limit", "golang_per_route", NULL};
  if (check_keys(j, "VirtualHost", keys, err, errlen) != 0) return -1;
  vh->name = dup_s(json_string_value(json_object_get(j, "name")));
  json_t *ds = json_object_get(j, "domains");
  vh->ndomains = json_array_size(ds);
  vh->domains = calloc(vh->ndomains ? vh->ndomains : 1, sizeof(char *));
  if (vh->domains == NULL) abort();
  for (size_t i = 0; i < vh->ndomains; i++) {
    vh->domains[i] = dup_s(json_string_value(json_array_get(ds, i)));
    for (char *c = vh->domains[i]; *c; c++) *c = (char)tolower((unsigned char)*c);
  }
  json_t *rs = json_object_get(j, "routes");
  size_t n = json_array_size(rs);
  vh->routes = calloc(n ? n : 1, sizeof(route_t));
  if (vh->routes == NULL) abort();
  for (size_t i = 0; i < n; i++) {
    vh->nroutes++;
    if (parse_route(json_array_get(rs, i), &vh->routes[i], err, errlen) != 0) return -1;
  }
  if (hmuts_parse(json_object_get(j, "request_headers_to_add"), json_object_get(j, "request_headers_to_remove"),
                  &vh->req_headers, err, errlen) != 0 ||
      hmuts_parse(json_object_get(j, "response_headers_to_add"), json_object_get(j, "response_headers_to_remove"),
                  &vh->resp_headers, err, errlen) != 0)
    return -1;
  if (parse_retry(json_object_get(j, "retry_policy"), &vh->retry, err, errlen) != 0) return -1;
  vh->body_buffer_limit = buffer_limit(j);
  return parse_golang(json_object_get(j, "golang_per_route"), &vh->golang, err, errlen);
}

static void vhost_free(vhost_t *vh) {
  free(vh->name);
  for (size_t i = 0; i < vh->ndomains; i++) free(vh->domains[i]);
  free(vh->domains);
  for (size_t i = 0; i < vh->nroutes; i++) route_free(&vh->routes[i]);
  free(vh->routes);
  hmuts_free(&vh->req_headers);
  hmuts_free(&vh->resp_headers);
  free(vh->retry.codes);
  rplugin_free(vh->golang);
}

routecfg_t *routecfg_parse(json_t *j, char *err, size_t errlen) {
  static const char *const keys[] = {"name", "virtual_hosts", "request_headers_to_add", "request_headers_to_remove",
                                     "response_headers_to_add", "response_headers_to_remove",
                                     "ignore_port_in_host_matching", "validate_clusters", "hash", NULL};
  if (check_keys(j, "RouteConfiguration", keys, err, errlen) != 0) return NULL;
  routecfg_t *rc = calloc(1, sizeof(*rc));
  if (rc == NULL) abort();
  atomic_store(&rc->refs, 1);
  rc->name = dup_s(json_string_value(json_object_get(j, "name")));
  rc->hash = dup_s(json_string_value(json_object_get(j, "hash")));
  rc->ignore_port = json_is_true(json_object_get(j, "ignore_port_in_host_matching"));
  json_t *vs = json_object_get(j, "virtual_hosts");
  size_t n = json_array_size(vs);
  rc->vhosts = calloc(n ? n : 1, sizeof(vhost_t));
  if (rc->vhosts == NULL) abort();
  int rcode = 0;
  for (size_t i = 0; rcode == 0 && i < n; i++) {
    rc->nvhosts++;
    rcode = parse_vhost(json_array_get(vs, i), &rc->vhosts[i], err, errlen);
  }
  if (rcode == 0)
    rcode = hmuts_parse(json_object_get(j, "request_headers_to_add"), json_object_get(j, "request_headers_to_remove"),
                        &rc->req_headers, err, errlen);
  if (rcode == 0)
    rcode = hmuts_parse(json_object_get(j, "response_headers_to_add"),
                        json_object_get(j, "response_headers_to_remove"), &rc->resp_headers, err, errlen);
  /* RouteMatcher's constructor: one "*" and unique domains per table */
  int wildcard = 0;
  for (size_t i = 0; rcode == 0 && i < rc->nvhosts; i++)
    for (size_t d = 0; rcode == 0 && d < rc->vhosts[i].ndomains; d++) {
      const char *dom = rc->vhosts[i].domains[d];
      if (strcmp(dom, "*") == 0 && wildcard++) {
        snprintf(err, errlen, "Only a single wildcard domain is permitted in route %s", rc->name);
        rcode = -1;
      }
      for (size_t i2 = 0; rcode == 0 && i2 <= i; i2++)
        for (size_t d2 = 0; d2 < rc->vhosts[i2].ndomains && (i2 < i || d2 < d); d2++)
          if (strcmp(dom, "*") != 0 && strcmp(dom, rc->vhosts[i2].domains[d2]) == 0) {
            snprintf(err, errlen, "Only unique values for domains are permitted. Duplicate entry of domain %s in route %s",
                     dom, rc->name);
            rcode = -1;
            break;
          }
    }
  if (rcode != 0) {
    routecfg_unref(rc);
    return NULL;
  }
  return rc;
}

void routecfg_ref(routecfg_t *rc) { atomic_fetch_add(&rc->refs, 1); }

void routecfg_unref(routecfg_t *rc) {
  if (rc == NULL || atomic_fetch_sub(&rc->refs, 1) != 1) return;
  for (size_t i = 0; i < rc->nvhosts; i++) vhost_free(&rc->vhosts[i]);
  free(rc->vhosts);
  hmuts_free(&rc->req_headers);
  hmuts_free(&rc->resp_headers);
  free(rc->name);
  free(rc->hash);
  free(rc);
}

/* Http::HeaderUtility::getPortStart */
static size_t host_without_port(const char *h, size_t n) {
  if (n > 0 && h[n - 1] == ']') return n;
  const char *colon = memrchr(h, ':', n);
  if (colon == NULL) return n;
  if (h[0] == '[') return (size_t)(colon - h);
  if (memchr(h, ':', (size_t)(colon - h)) != NULL) return n; /* a bare IPv6 address */
  return (size_t)(colon - h);
}

static const vhost_t *find_vhost(const routecfg_t *rc, const hmap_t *headers) {
  const vhost_t *dflt = NULL;
  const char *hv = hmap_get_str(headers, ":authority");
  char host[512];
  size_t hn = 0;
  if (hv != NULL) {
    hn = strlen(hv);
    if (rc->ignore_port) hn = host_without_port(hv, hn);
    if (hn >= sizeof(host)) hn = sizeof(host) - 1;
    for (size_t i = 0; i < hn; i++) host[i] = (char)tolower((unsigned char)hv[i]);
  }
  host[hn] = 0;
  /* exact, then the longest "*suffix", then the longest "prefix*", then "*" */
  const vhost_t *best_suffix = NULL, *best_prefix = NULL;
  size_t suffix_len = 0, prefix_len = 0;
  for (size_t i = 0; i < rc->nvhosts; i++) {
    const vhost_t *vh = &rc->vhosts[i];
    for (size_t d = 0; d < vh->ndomains; d++) {
      const char *dom = vh->domains[d];
      size_t dl = strlen(dom);
      if (strcmp(dom, "*") == 0) {
        dflt = vh;
      } else if (dom[0] == '*') {
        /* ">= because *.foo.com shouldn't match .foo.com" (findWildcardVirtualHost) */
        if (hv != NULL && dl > suffix_len && dl - 1 < hn && strcmp(host + hn - (dl - 1), dom + 1) == 0) {
          best_suffix = vh;
          suffix_len = dl;
        }
      } else if (dom[dl - 1] == '*') {
        if (hv != NULL && dl > prefix_len && dl - 1 < hn && strncmp(host, dom, dl - 1) == 0) {
          best_prefix = vh;
          prefix_len = dl;
        }
      } else if (hv != NULL && strcmp(dom, host) == 0) {
        return vh;
      }
    }
  }
  if (best_suffix) return best_suffix;
  if (best_prefix) return best_prefix;
  return dflt;
}

static int path_matches(const route_t *r, const char *path) {
  /* PathMatcher::match strips the query and fragment */
  size_t n = strcspn(path, "?#");
  size_t l = strlen(r->path);
  int (*cmp)(const char *, const char *, size_t) = r->case_sensitive ? strncmp : strncasecmp;
  switch (r->path_kind) {
  case PATH_PREFIX: return n >= l && cmp(path, r->path, l) == 0;
  case PATH_EXACT: return n == l && cmp(path, r->path, l) == 0;
  case PATH_SEPARATED_PREFIX: return n >= l && cmp(path, r->path, l) == 0 && (n == l || path[l] == '/');
  }
  return 0;
}

const route_t *routecfg_match(const routecfg_t *rc, const hmap_t *headers, const vhost_t **vh_out) {
  const vhost_t *vh = find_vhost(rc, headers);
  if (vh_out) *vh_out = vh;
  if (vh == NULL) return NULL;
  const char *path = hmap_get_str(headers, ":path");
  if (path == NULL) return NULL;
  for (size_t i = 0; i < vh->nroutes; i++) {
    const route_t *r = &vh->routes[i];
    int ok = 1;
    for (size_t h = 0; ok && h < r->nheaders; h++) ok = hdrmatch_match(&r->headers[h], headers);
    if (ok && path_matches(r, path)) return r;
  }
  return NULL;
}
