#include "cluster.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "routecfg.h"
#include "stats.h"

/* Cluster circuit breaker defaults (upstream/upstream_impl.cc:2166-2169). */
enum { kDefaultMaxConnections = 1024, kDefaultMaxPending = 1024, kDefaultMaxRequests = 1024, kDefaultMaxRetries = 3 };
/* Cluster.connect_timeout default (upstream/upstream_impl.cc:1206-1207). */
enum { kDefaultConnectTimeoutMs = 5000 };
/* per_connection_buffer_limit_bytes default, 1 MiB (upstream/upstream_impl.cc:1279). */
enum { kDefaultBufferLimit = 1024 * 1024 };

/* Utility::parseInternetAddressAndPortNoThrow: "ip:port" or "[ip6]:port",
 * one address, never a list (network/utility.cc:130-171); ip comes back in
 * the canonical form of Address::Ip::addressAsString. */
int parse_ip_port(const char *s, char *ip, size_t iplen, uint16_t *port) {
  size_t n = strlen(s);
  const char *colon;
  char tmp[64];
  if (n == 0) return -1;
  if (s[0] == '[') {
    const char *rb = NULL;
    for (const char *p = s; (p = strstr(p, "]:")) != NULL; p++) rb = p; /* rfind("]:") */
    if (rb == NULL || (size_t)(rb - s - 1) >= sizeof(tmp)) return -1;
    memcpy(tmp, s + 1, (size_t)(rb - s - 1));
    tmp[rb - s - 1] = 0;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, tmp, &a6) != 1) return -1;
    /* Ipv6Instance::asString is canonical: lower case, zeros compressed */
    inet_ntop(AF_INET6, &a6, tmp, sizeof(tmp));
    colon = rb + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof(tmp)) return -1;
    memcpy(tmp, s, (size_t)(colon - s));
    tmp[colon - s] = 0;
    struct in_addr a4;
    if (inet_pton(AF_INET, tmp, &a4) != 1) return -1;
    inet_ntop(AF_INET, &a4, tmp, sizeof(tmp));
  }
  const char *ps = colon + 1;
  if (*ps == 0) return -1;
  unsigned long p = 0;
  for (const char *c = ps; *c; c++) {
    if (*c < '0' || *c > '9') return -1;
    p = p * 10 + (unsigned long)(*c - '0');
    if (p > 65535) return -1;
  }
  if (ip) snprintf(ip, iplen, "%s", tmp);
  if (port) *port = (uint16_t)p;
  return 0;
}

/* ---- persistent per-name state ---- */

static pthread_mutex_t cstats_mu = PTHREAD_MUTEX_INITIALIZER;
static cstats_t *all_cstats;

static cstats_t *cstats_for(const char *name) {
  pthread_mutex_lock(&cstats_mu);
  cstats_t *s;
  for (s = all_cstats; s != NULL; s = s->next)
    if (strcmp(s->name, name) == 0) break;
  if (s == NULL) {
    s = calloc(1, sizeof(*s));
    if (s == NULL) abort();
    s->name = strdup(name);
#define C(field, stat) s->field = stat_counter("cluster.%s." stat, name)
    C(rq_total, "upstream_rq_total");
    C(rq_retry, "upstream_rq_retry");
    C(rq_retry_success, "upstream_rq_retry_success");
    C(rq_retry_overflow, "upstream_rq_retry_overflow");
    C(rq_timeout, "upstream_rq_timeout");
    C(rq_per_try_timeout, "upstream_rq_per_try_timeout");
    C(rq_pending_overflow, "upstream_rq_pending_overflow");
    C(cx_total, "upstream_cx_total");
    C(cx_connect_fail, "upstream_cx_connect_fail");
    C(cx_connect_timeout, "upstream_cx_connect_timeout");
    C(cx_none_healthy, "upstream_cx_none_healthy");
    C(original_dst_host_invalid, "original_dst_host_invalid");
    C(rq_2xx, "upstream_rq_2xx");
    C(rq_4xx, "upstream_rq_4xx");
    C(rq_5xx, "upstream_rq_5xx");
#undef C
    s->rq_active = stat_gauge("cluster.%s.upstream_rq_active", name);
    s->cx_active = stat_gauge("cluster.%s.upstream_cx_active", name);
    s->next = all_cstats;
    all_cstats = s;
  }
  pthread_mutex_unlock(&cstats_mu);
  return s;
}

/* The host for addr (canonical ip:port), created once per cluster name. */
static host_t *known_host(cstats_t *s, const char *ip, uint16_t port) {
  char addr[64];
  if (strchr(ip, ':')) snprintf(addr, sizeof(addr), "[%s]:%u", ip, port);
  else snprintf(addr, sizeof(addr), "%s:%u", ip, port);
  pthread_mutex_lock(&cstats_mu);
  for (size_t i = 0; i < s->nknown; i++)
    if (strcmp(s->known[i]->addr, addr) == 0) {
      host_t *h = s->known[i];
      pthread_mutex_unlock(&cstats_mu);
      return h;
    }
  if (s->nknown == s->capknown) {
    s->capknown = s->capknown ? s->capknown * 2 : 8;
    s->known = realloc(s->known, s->capknown * sizeof(host_t *));
    if (s->known == NULL) abort();
  }
  host_t *h = calloc(1, sizeof(*h));
  if (h == NULL) abort();
  snprintf(h->addr, sizeof(h->addr), "%s", addr);
  snprintf(h->ip, sizeof(h->ip), "%s", ip);
  h->port = port;
  s->known[s->nknown++] = h;
  pthread_mutex_unlock(&cstats_mu);
  return h;
}

/* Is addr already a host of this ORIGINAL_DST cluster (its host map)? */
static host_t *find_known(cstats_t *s, const char *addr) {
  host_t *h = NULL;
  pthread_mutex_lock(&cstats_mu);
  for (size_t i = 0; i < s->nknown && h == NULL; i++)
    if (strcmp(s->known[i]->addr, addr) == 0) h = s->known[i];
  pthread_mutex_unlock(&cstats_mu);
  return h;
}

/* ---- parsing ---- */

static char *dup_s(const char *s) {
  char *d = strdup(s ? s : "");
  if (d == NULL) abort();
  return d;
}

static void md_path_parse(json_t *j, md_path_t *p) {
  p->ns = dup_s(json_string_value(json_object_get(j, "key")));
  json_t *path = json_object_get(j, "path");
  p->nkeys = json_array_size(path);
  p->keys = calloc(p->nkeys ? p->nkeys : 1, sizeof(char *));
  if (p->keys == NULL) abort();
  for (size_t i = 0; i < p->nkeys; i++) p->keys[i] = dup_s(json_string_value(json_object_get(json_array_get(path, i), "key")));
}

static void md_path_free(md_path_t *p) {
  free(p->ns);
  for (size_t i = 0; i < p->nkeys; i++) free(p->keys[i]);
  free(p->keys);
}

static int lb_of(const char *s, int *out) {
  if (s == NULL || strcmp(s, "ROUND_ROBIN") == 0) *out = LB_ROUND_ROBIN;
  else if (strcmp(s, "LEAST_REQUEST") == 0) *out = LB_LEAST_REQUEST;
  else if (strcmp(s, "CLUSTER_PROVIDED") == 0) *out = LB_CLUSTER_PROVIDED;
  else if (strcmp(s, "OVERRIDE_HOST") == 0) *out = LB_OVERRIDE_HOST;
  else return -1;
  return 0;
}

/* An SSL_CTX for the cluster: the CA bundle must load, as Envoy rejects a
 * cluster whose trusted_ca does not (context_config_impl.cc). */
static upstream_tls_t *parse_tls(json_t *j, const char *cluster, char *err, size_t errlen) {
  upstream_tls_t *t = calloc(1, sizeof(*t));
  if (t == NULL) abort();
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) abort();
  t->ctx = ctx;
  const char *ca = json_string_value(json_object_get(j, "ca_file"));
  if (ca == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
    snprintf(err, errlen, "cluster %s: failed to load trusted CA certificates from %s", cluster, ca ? ca : "(none)");
    return t;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION); /* Envoy's client default minimum */
  const char *sni = json_string_value(json_object_get(j, "sni"));
  if (sni && sni[0]) t->sni = dup_s(sni);
  json_t *sans = json_object_get(j, "sans");
  for (size_t i = 0; i < json_array_size(sans); i++) {
    json_t *s = json_array_get(sans, i);
    const char *type = json_string_value(json_object_get(s, "type"));
    const char *v = json_string_value(json_object_get(s, "exact"));
    if (type && strcmp(type, "IP_ADDRESS") == 0) {
      if (t->ip_san == NULL) t->ip_san = dup_s(v);
    } else {
      t->dns_sans = realloc(t->dns_sans, (t->ndns + 1) * sizeof(char *));
      if (t->dns_sans == NULL) abort();
      t->dns_sans[t->ndns++] = dup_s(v);
    }
  }
  err[0] = 0;
  return t;
}

static void tls_free(upstream_tls_t *t) {
  if (t == NULL) return;
  SSL_CTX_free(t->ctx);
  free(t->sni);
  for (size_t i = 0; i < t->ndns; i++) free(t->dns_sans[i]);
  free(t->dns_sans);
  free(t->ip_san);
  free(t);
}

void *cluster_new_ssl(const cluster_t *c) {
  upstream_tls_t *t = c->tls;
  SSL *ssl = SSL_new(t->ctx);
  if (ssl == NULL) abort();
  if (t->sni) SSL_set_tlsext_host_name(ssl, t->sni);
  /* match_typed_subject_alt_names: the certificate's SANs only, never its CN */
  X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
  X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
  for (size_t i = 0; i < t->ndns; i++) X509_VERIFY_PARAM_add1_host(vp, t->dns_sans[i], 0);
  if (t->ip_san) X509_VERIFY_PARAM_set1_ip_asc(vp, t->ip_san);
  return ssl;
}

cluster_t *cluster_parse(json_t *j, char *err, size_t errlen) {
  cluster_t *c = calloc(1, sizeof(*c));
  if (c == NULL) abort();
  atomic_store(&c->refs, 1);
  c->name = dup_s(json_string_value(json_object_get(j, "name")));
  c->hash = dup_s(json_string_value(json_object_get(j, "hash")));
  c->st = cstats_for(c->name);
  const char *type = json_string_value(json_object_get(j, "type"));
  c->type = type && strcmp(type, "ORIGINAL_DST") == 0 ? CT_ORIGINAL_DST : CT_STATIC;
  if (lb_of(json_string_value(json_object_get(j, "lb_policy")), &c->lb) != 0) {
    snprintf(err, errlen, "cluster %s: lb_policy %s is not modelled by envoyhost", c->name,
             json_string_value(json_object_get(j, "lb_policy")));
    cluster_unref(c);
    return NULL;
  }
  if ((c->type == CT_ORIGINAL_DST) != (c->lb == LB_CLUSTER_PROVIDED)) {
    /* ORIGINAL_DST only takes CLUSTER_PROVIDED (clusters/original_dst/original_dst_cluster.cc:395-410) */
    snprintf(err, errlen, "cluster %s: ORIGINAL_DST goes with lb_policy CLUSTER_PROVIDED and only it", c->name);
    cluster_unref(c);
    return NULL;
  }
  json_t *od = json_object_get(j, "original_dst");
  if (od) {
    if (json_is_true(json_object_get(od, "use_http_header"))) {
      const char *h = json_string_value(json_object_get(od, "http_header_name"));
      /* an empty name means x-envoy-original-dst-host (original_dst_cluster.cc:203-206) */
      c->odst_header = dup_s(h && h[0] ? h : "x-envoy-original-dst-host");
    }
    json_t *mk = json_object_get(od, "metadata_key");
    if (mk) md_path_parse(mk, &c->odst_md);
  }
  const char *dh = json_string_value(json_object_get(j, "default_host"));
  if (dh) {
    char ip[48];
    uint16_t port;
    if (parse_ip_port(dh, ip, sizeof(ip), &port) != 0) {
      snprintf(err, errlen, "cluster %s: default_host %s is not ip:port", c->name, dh);
      cluster_unref(c);
      return NULL;
    }
    c->default_host = known_host(c->st, ip, port);
  }
  json_t *oh = json_object_get(j, "override_host");
  if (oh) {
    json_t *srcs = json_object_get(oh, "sources");
    c->nsources = json_array_size(srcs);
    c->sources = calloc(c->nsources ? c->nsources : 1, sizeof(override_source_t));
    if (c->sources == NULL) abort();
    for (size_t i = 0; i < c->nsources; i++) {
      json_t *s = json_array_get(srcs, i);
      if (json_object_get(s, "header")) c->sources[i].header = dup_s(json_string_value(json_object_get(s, "header")));
      else md_path_parse(json_object_get(s, "metadata"), &c->sources[i].md);
    }
    if (lb_of(json_string_value(json_object_get(oh, "fallback")), &c->fallback_lb) != 0 ||
        (c->fallback_lb != LB_ROUND_ROBIN && c->fallback_lb != LB_LEAST_REQUEST)) {
      snprintf(err, errlen, "cluster %s: override_host fallback_policy is not modelled by envoyhost", c->name);
      cluster_unref(c);
      return NULL;
    }
  }
  json_t *eps = json_object_get(j, "endpoints");
  c->nhosts = json_array_size(eps);
  c->hosts = calloc(c->nhosts ? c->nhosts : 1, sizeof(host_t *));
  if (c->hosts == NULL) abort();
  for (size_t i = 0; i < c->nhosts; i++) {
    char ip[48];
    uint16_t port;
    const char *a = json_string_value(json_array_get(eps, i));
    if (a == NULL || parse_ip_port(a, ip, sizeof(ip), &port) != 0) {
      snprintf(err, errlen, "cluster %s: endpoint %s is not ip:port", c->name, a ? a : "?");
      cluster_unref(c);
      return NULL;
    }
    c->hosts[i] = known_host(c->st, ip, port);
  }
  c->connect_timeout_ms = parse_duration_ms(json_object_get(j, "connect_timeout"), kDefaultConnectTimeoutMs);
  json_t *bl = json_object_get(j, "per_connection_buffer_limit_bytes");
  c->buffer_limit = bl ? (uint32_t)json_integer_value(bl) : kDefaultBufferLimit;
  json_t *cb = json_object_get(j, "circuit_breakers");
#define LIMIT(field, key, dflt) \
  c->field = json_object_get(cb, key) ? (long)json_integer_value(json_object_get(cb, key)) : (dflt)
  LIMIT(max_connections, "max_connections", kDefaultMaxConnections);
  LIMIT(max_pending, "max_pending_requests", kDefaultMaxPending);
  LIMIT(max_requests, "max_requests", kDefaultMaxRequests);
  LIMIT(max_retries, "max_retries", kDefaultMaxRetries);
#undef LIMIT
  json_t *tls = json_object_get(j, "tls");
  if (tls) {
    c->tls = parse_tls(tls, c->name, err, errlen);
    if (err[0]) {
      cluster_unref(c);
      return NULL;
    }
  }
  json_t *ci = json_object_get(j, "credential_injector");
  if (ci) {
    c->cred = calloc(1, sizeof(*c->cred));
    if (c->cred == NULL) abort();
    c->cred->secret = dup_s(json_string_value(json_object_get(ci, "secret")));
    const char *h = json_string_value(json_object_get(ci, "header"));
    c->cred->header = dup_s(h && h[0] ? h : "authorization");
    c->cred->prefix = dup_s(json_string_value(json_object_get(ci, "header_value_prefix")));
    c->cred->overwrite = json_is_true(json_object_get(ci, "overwrite"));
    c->cred->allow_missing = json_is_true(json_object_get(ci, "allow_request_without_credential"));
  }
  return c;
}

void cluster_ref(cluster_t *c) { atomic_fetch_add(&c->refs, 1); }

void cluster_unref(cluster_t *c) {
  if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1) return;
  free(c->name);
  free(c->hash);
  free(c->odst_header);
  md_path_free(&c->odst_md);
  for (size_t i = 0; i < c->nsources; i++) {
    free(c->sources[i].header);
    md_path_free(&c->sources[i].md);
  }
  free(c->sources);
  free(c->hosts);
  tls_free(c->tls);
  if (c->cred) {
    free(c->cred->secret);
    free(c->cred->header);
    free(c->cred->prefix);
    free(c->cred);
  }
  free(c);
}

/* ---- picking ---- */

void pick_ctx_free(pick_ctx_t *p) {
  for (size_t i = 0; i < p->nselected; i++) free(p->selected[i]);
  free(p->selected);
  p->selected = NULL;
  p->nselected = p->next_selected = 0;
}

static uint64_t next_rand(pick_ctx_t *p) {
  uint64_t x = p->rng ? p->rng : 0x9E3779B97F4A7C15ull;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  p->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* Config::Metadata::metadataValue as a string; list values give their first
 * element when first_of_list (ORIGINAL_DST does that, original_dst_cluster.cc:151-190;
 * OverrideHost not). */
static int md_string(const metadata_t *md, const md_path_t *path, int first_of_list, char *out, size_t outlen) {
  if (md == NULL || path->ns == NULL || path->nkeys == 0) return 0;
  const buf_t *v = md_get(md, path->ns, path->keys[0]);
  if (v == NULL) return 0;
  json_t *j = md_value_json(v->data, v->len);
  for (size_t i = 1; j != NULL && i < path->nkeys; i++) {
    json_t *n = json_is_object(j) ? json_object_get(j, path->keys[i]) : NULL;
    if (n) json_incref(n);
    json_decref(j);
    j = n;
  }
  if (first_of_list && json_is_array(j) && json_array_size(j) > 0) {
    json_t *first = json_incref(json_array_get(j, 0));
    json_decref(j);
    j = first;
  }
  int ok = json_is_string(j);
  if (ok) snprintf(out, outlen, "%s", json_string_value(j));
  json_decref(j);
  return ok;
}

/* OriginalDstCluster::LoadBalancer::chooseHost: metadata_key, then the
 * header, then the restored local address; hosts are created on first use
 * and shared (original_dst_cluster.cc:32-100). The filter-state source is
 * not modelled (Inflow does not set it). */
static host_t *original_dst(cluster_t *c, pick_ctx_t *p) {
  char v[512], ip[48];
  uint16_t port;
  if (md_string(p->md, &c->odst_md, 1, v, sizeof(v))) {
    if (parse_ip_port(v, ip, sizeof(ip), &port) == 0) return known_host(c->st, ip, port);
    atomic_fetch_add(c->st->original_dst_host_invalid, 1);
    hlog(LOG_DEBUG, "original_dst_load_balancer: invalid override metadata value. %s", v);
  }
  if (c->odst_header) {
    /* an implicitly untrusted header: only its first value is used; not an
     * address -> original_dst_host_invalid (original_dst_cluster.cc:123-149) */
    const char *h = hmap_get_str(p->headers, c->odst_header);
    if (h != NULL) {
      if (parse_ip_port(h, ip, sizeof(ip), &port) == 0) return known_host(c->st, ip, port);
      atomic_fetch_add(c->st->original_dst_host_invalid, 1);
      hlog(LOG_DEBUG, "original_dst_load_balancer: invalid override header value. %s", h);
    }
  }
  /* the restored local address: only the static mode has one to stand in
   * (--default-upstream); an xDS listener has no original_dst filter */
  if (c->default_host) return c->default_host;
  return NULL;
}

static host_t *round_robin(cluster_t *c) {
  if (c->nhosts == 0) return NULL;
  unsigned i = atomic_fetch_add(&c->rr, 1);
  return c->hosts[i % c->nhosts];
}

/* LeastRequestLoadBalancer with equal weights: the less loaded of
 * choice_count (2) random hosts, the first on a tie
 * (load_balancing_policies/least_request/least_request_lb.cc:126-150). */
static host_t *least_request(cluster_t *c, pick_ctx_t *p) {
  if (c->nhosts == 0) return NULL;
  host_t *best = c->hosts[next_rand(p) % c->nhosts];
  host_t *other = c->hosts[next_rand(p) % c->nhosts];
  return atomic_load(&other->active_rq) < atomic_load(&best->active_rq) ? other : best;
}

static void add_selected(pick_ctx_t *p, const char *s, size_t n) {
  while (n > 0 && (s[0] == ' ' || s[0] == '\t')) s++, n--;
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  if (n == 0) return; /* absl::SkipWhitespace */
  p->selected = realloc(p->selected, (p->nselected + 1) * sizeof(char *));
  if (p->selected == NULL) abort();
  p->selected[p->nselected++] = strndup(s, n);
}

/* getSelectedHosts: every source in order, each "ip:port[,ip:port...]",
 * split on commas, blanks skipped and trimmed; metadata must be a string
 * (load_balancing_policies/override_host/load_balancer.cc:232-291). */
static void init_selected(cluster_t *c, pick_ctx_t *p) {
  p->selected_init = 1;
  for (size_t i = 0; i < c->nsources; i++) {
    char v[2048];
    const char *hosts = NULL;
    if (c->sources[i].header) {
      hosts = hmap_get_str(p->headers, c->sources[i].header); /* first value only */
    } else if (md_string(p->md, &c->sources[i].md, 0, v, sizeof(v))) {
      hosts = v;
    }
    if (hosts == NULL) continue;
    for (const char *s = hosts;;) {
      const char *comma = strchr(s, ',');
      add_selected(p, s, comma ? (size_t)(comma - s) : strlen(s));
      if (comma == NULL) break;
      s = comma + 1;
    }
  }
}

static host_t *member(cluster_t *c, const char *addr) {
  for (size_t i = 0; i < c->nhosts; i++)
    if (strcmp(c->hosts[i]->addr, addr) == 0) return c->hosts[i];
  return NULL;
}

static host_t *override_host(cluster_t *c, pick_ctx_t *p) {
  if (!p->selected_init) init_selected(c, p);
  /* getEndpoint: each pick (each retry) consumes entries until one is in
   * the host map; when none is left, the fallback policy picks
   * (override_host/load_balancer.cc:153-189, 313-328) */
  while (p->next_selected < p->nselected) {
    host_t *h = member(c, p->selected[p->next_selected++]);
    if (h != NULL) return h;
  }
  return c->fallback_lb == LB_LEAST_REQUEST ? least_request(c, p) : round_robin(c);
}

host_t *cluster_pick(cluster_t *c, pick_ctx_t *p) {
  if (p->override_host && p->override_host[0]) {
    /* HostUtility::selectOverrideHost: the string as the filter gave it,
     * looked up in the cross-priority host map, whose keys are the hosts'
     * address strings (upstream/host_utility.cc:141-172): no
     * canonicalisation, so "[::0001]:80" is not "[::1]:80" */
    host_t *h = c->type == CT_ORIGINAL_DST ? find_known(c->st, p->override_host) : member(c, p->override_host);
    if (h != NULL) return h;
    if (p->override_strict) {
      atomic_fetch_add(c->st->cx_none_healthy, 1);
      return NULL;
    }
  }
  host_t *h;
  switch (c->lb) {
  case LB_CLUSTER_PROVIDED: h = original_dst(c, p); break;
  case LB_OVERRIDE_HOST: h = override_host(c, p); break;
  case LB_LEAST_REQUEST: h = least_request(c, p); break;
  default: h = round_robin(c); break;
  }
  if (h == NULL) atomic_fetch_add(c->st->cx_none_healthy, 1);
  return h;
}
