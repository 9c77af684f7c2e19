#include "format.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "respflags.h"

/* The command operators implemented (docs/root/configuration/observability/
 * access_log/usage.rst names them all); anything else refuses the config. */
enum {
  OP_LITERAL, OP_REQ, OP_RESP, OP_TRAILER, OP_RESPONSE_CODE, OP_RESPONSE_CODE_DETAILS, OP_RESPONSE_FLAGS,
  OP_RESPONSE_FLAGS_LONG, OP_LOCAL_REPLY_BODY, OP_DYNAMIC_METADATA, OP_UPSTREAM_HOST, OP_UPSTREAM_CLUSTER,
  OP_ROUTE_NAME, OP_DURATION, OP_REQUEST_DURATION, OP_RESPONSE_DURATION, OP_START_TIME, OP_BYTES_RECEIVED,
  OP_BYTES_SENT, OP_PROTOCOL, OP_DOWNSTREAM_REMOTE_ADDRESS, OP_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT,
  OP_DOWNSTREAM_LOCAL_ADDRESS, OP_UPSTREAM_REQUEST_ATTEMPT_COUNT, OP_UPSTREAM_LOCAL_ADDRESS,
  OP_UPSTREAM_TRANSPORT_FAILURE_REASON, OP_REQUESTED_SERVER_NAME, OP_CONNECTION_TERMINATION_DETAILS,
};

static const struct {
  const char *name;
  int op;
  int args; /* 0 none, 1 required (...) */
} kOps[] = {
    {"REQ", OP_REQ, 1}, {"RESP", OP_RESP, 1}, {"TRAILER", OP_TRAILER, 1},
    {"RESPONSE_CODE", OP_RESPONSE_CODE, 0}, {"RESPONSE_CODE_DETAILS", OP_RESPONSE_CODE_DETAILS, 0},
    {"RESPONSE_FLAGS", OP_RESPONSE_FLAGS, 0}, {"RESPONSE_FLAGS_LONG", OP_RESPONSE_FLAGS_LONG, 0},
    {"LOCAL_REPLY_BODY", OP_LOCAL_REPLY_BODY, 0}, {"DYNAMIC_METADATA", OP_DYNAMIC_METADATA, 1},
    {"UPSTREAM_HOST", OP_UPSTREAM_HOST, 0}, {"UPSTREAM_CLUSTER", OP_UPSTREAM_CLUSTER, 0},
    {"ROUTE_NAME", OP_ROUTE_NAME, 0}, {"DURATION", OP_DURATION, 0}, {"REQUEST_DURATION", OP_REQUEST_DURATION, 0},
    {"RESPONSE_DURATION", OP_RESPONSE_DURATION, 0}, {"START_TIME", OP_START_TIME, 0},
    {"BYTES_RECEIVED", OP_BYTES_RECEIVED, 0}, {"BYTES_SENT", OP_BYTES_SENT, 0}, {"PROTOCOL", OP_PROTOCOL, 0},
    {"DOWNSTREAM_REMOTE_ADDRESS", OP_DOWNSTREAM_REMOTE_ADDRESS, 0},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", OP_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT, 0},
    {"DOWNSTREAM_LOCAL_ADDRESS", OP_DOWNSTREAM_LOCAL_ADDRESS, 0},
    {"UPSTREAM_REQUEST_ATTEMPT_COUNT", OP_UPSTREAM_REQUEST_ATTEMPT_COUNT, 0},
    {"UPSTREAM_LOCAL_ADDRESS", OP_UPSTREAM_LOCAL_ADDRESS, 0},
    {"UPSTREAM_TRANSPORT_FAILURE_REASON", OP_UPSTREAM_TRANSPORT_FAILURE_REASON, 0},
    {"REQUESTED_SERVER_NAME", OP_REQUESTED_SERVER_NAME, 0},
    {"CONNECTION_TERMINATION_DETAILS", OP_CONNECTION_TERMINATION_DETAILS, 0},
};

typedef struct seg {
  int op;
  char *text;   /* literal text, or the first header name / metadata namespace */
  char *alt;    /* REQ(a?b): the alternative header */
  char **path;  /* DYNAMIC_METADATA keys */
  size_t npath;
  size_t maxlen; /* :Z, 0 = none */
} seg_t;

typedef struct piece { /* one format string: its segments */
  seg_t *segs;
  size_t n;
} piece_t;

typedef struct jelem { /* json_format: raw JSON text or a format string */
  char *raw;
  piece_t piece;
} jelem_t;

struct fmt {
  int json, omit_empty;
  piece_t text;
  jelem_t *elems;
  size_t nelems;
};

static void add_seg(piece_t *p, seg_t s) {
  seg_t *n = realloc(p->segs, (p->n + 1) * sizeof(*n));
  if (n == NULL) abort();
  p->segs = n;
  p->segs[p->n++] = s;
}

static void piece_free(piece_t *p) {
  for (size_t i = 0; i < p->n; i++) {
    free(p->segs[i].text);
    free(p->segs[i].alt);
    for (size_t k = 0; k < p->segs[i].npath; k++) free(p->segs[i].path[k]);
    free(p->segs[i].path);
  }
  free(p->segs);
  memset(p, 0, sizeof(*p));
}

static char *lower_dup(const char *s, size_t n) {
  char *d = strndup(s, n);
  if (d == NULL) abort();
  for (char *c = d; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
  return d;
}

/* SubstitutionFormatParser::parse: literal text, "%%" escapes, and
 * %COMMAND%, %COMMAND(arg)% or %COMMAND(arg):Z% */
static int parse_piece(const char *f, piece_t *out, char *err, size_t errlen) {
  buf_t lit;
  buf_init(&lit);
  size_t len = strlen(f);
  for (size_t i = 0; i < len;) {
    if (f[i] != '%') {
      buf_append(&lit, &f[i++], 1);
      continue;
    }
    if (i + 1 < len && f[i + 1] == '%') {
      buf_append(&lit, "%", 1);
      i += 2;
      continue;
    }
    const char *end = strchr(f + i + 1, '%');
    if (end == NULL) {
      snprintf(err, errlen, "format %s: unterminated command at position %zu", f, i);
      buf_free(&lit);
      return -1;
    }
    if (lit.len > 0) {
      seg_t s = {.op = OP_LITERAL, .text = strndup(lit.data, lit.len)};
      add_seg(out, s);
      lit.len = 0;
    }
    const char *cmd = f + i + 1;
    size_t cl = (size_t)(end - cmd);
    const char *paren = memchr(cmd, '(', cl);
    size_t namelen = paren ? (size_t)(paren - cmd) : cl;
    const char *colon_z = NULL;
    const char *close = NULL;
    if (paren) {
      close = memchr(paren, ')', (size_t)(end - paren));
      if (close == NULL) {
        snprintf(err, errlen, "format %s: command %.*s lacks ')'", f, (int)cl, cmd);
        buf_free(&lit);
        return -1;
      }
      if (close + 1 < end) colon_z = close + 1;
    } else {
      const char *c = memchr(cmd, ':', cl);
      if (c) {
        namelen = (size_t)(c - cmd);
        colon_z = c;
      }
    }
    int op = -1, args = 0;
    for (size_t k = 0; k < sizeof(kOps) / sizeof(kOps[0]); k++)
      if (strlen(kOps[k].name) == namelen && strncmp(kOps[k].name, cmd, namelen) == 0) {
        op = kOps[k].op;
        args = kOps[k].args;
      }
    if (op < 0) {
      snprintf(err, errlen, "format command %%%.*s%% is not implemented by envoyhost", (int)namelen, cmd);
      buf_free(&lit);
      return -1;
    }
    if ((args == 1) != (paren != NULL)) {
      snprintf(err, errlen, "format command %%%.*s%%: %s", (int)cl, cmd, args ? "needs (...)" : "takes no (...)");
      buf_free(&lit);
      return -1;
    }
    seg_t s = {.op = op};
    if (colon_z) {
      if (*colon_z != ':' || colon_z[1] < '0' || colon_z[1] > '9') {
        snprintf(err, errlen, "format command %%%.*s%%: bad length suffix", (int)cl, cmd);
        buf_free(&lit);
        return -1;
      }
      s.maxlen = (size_t)strtoul(colon_z + 1, NULL, 10);
    }
    if (paren) {
      const char *a = paren + 1;
      size_t al = (size_t)(close - a);
      if (op == OP_DYNAMIC_METADATA) {
        /* NAMESPACE:KEY:KEY... */
        const char *p = a, *e = a + al;
        const char *c = memchr(p, ':', al);
        s.text = strndup(p, c ? (size_t)(c - p) : al);
        while (c && c < e) {
          p = c + 1;
          c = memchr(p, ':', (size_t)(e - p));
          size_t kl = c ? (size_t)(c - p) : (size_t)(e - p);
          s.path = realloc(s.path, (s.npath + 1) * sizeof(char *));
          if (s.path == NULL) abort();
          s.path[s.npath++] = strndup(p, kl);
        }
      } else {
        const char *q = memchr(a, '?', al);
        s.text = lower_dup(a, q ? (size_t)(q - a) : al);
        if (q) s.alt = lower_dup(q + 1, (size_t)(close - q - 1));
      }
    }
    add_seg(out, s);
    i = (size_t)(end - f) + 1;
  }
  if (lit.len > 0) {
    seg_t s = {.op = OP_LITERAL, .text = strndup(lit.data, lit.len)};
    add_seg(out, s);
  }
  buf_free(&lit);
  return 0;
}

fmt_t *fmt_parse_text(const char *format, char *err, size_t errlen) {
  fmt_t *f = calloc(1, sizeof(*f));
  if (f == NULL) abort();
  if (parse_piece(format, &f->text, err, errlen) != 0) {
    fmt_free(f);
    return NULL;
  }
  return f;
}

static void add_elem(fmt_t *f, jelem_t e) {
  jelem_t *n = realloc(f->elems, (f->nelems + 1) * sizeof(*n));
  if (n == NULL) abort();
  f->elems = n;
  f->elems[f->nelems++] = e;
}

static void flush_raw(fmt_t *f, buf_t *raw) {
  jelem_t e = {.raw = strndup(raw->data ? raw->data : "", raw->len)};
  add_elem(f, e);
  raw->len = 0;
}

static void json_str(buf_t *b, const char *s, size_t n) {
  json_t *j = json_stringn(s, n);
  char *d = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
  buf_append(b, d, strlen(d));
  free(d);
  json_decref(j);
}

static int cmp_keys(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* JsonFormatBuilder::formatValueToFormatElements: keys sorted, strings
 * holding a '%' become format elements, everything else raw JSON. */
static int build_json(fmt_t *f, json_t *v, buf_t *raw, char *err, size_t errlen) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    size_t n = json_object_size(v), i = 0;
    const char **keys = calloc(n ? n : 1, sizeof(char *));
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) keys[i++] = k;
    qsort(keys, n, sizeof(char *), cmp_keys);
    buf_append(raw, "{", 1);
    for (i = 0; i < n; i++) {
      if (i) buf_append(raw, ",", 1);
      json_str(raw, keys[i], strlen(keys[i]));
      buf_append(raw, ":", 1);
      if (build_json(f, json_object_get(v, keys[i]), raw, err, errlen) != 0) {
        free(keys);
        return -1;
      }
    }
    buf_append(raw, "}", 1);
    free(keys);
    return 0;
  }
  case JSON_ARRAY: {
    buf_append(raw, "[", 1);
    for (size_t i = 0; i < json_array_size(v); i++) {
      if (i) buf_append(raw, ",", 1);
      if (build_json(f, json_array_get(v, i), raw, err, errlen) != 0) return -1;
    }
    buf_append(raw, "]", 1);
    return 0;
  }
  case JSON_STRING:
    if (strchr(json_string_value(v), '%') == NULL) {
      json_str(raw, json_string_value(v), json_string_length(v));
      return 0;
    }
    flush_raw(f, raw);
    jelem_t e = {0};
    if (parse_piece(json_string_value(v), &e.piece, err, errlen) != 0) {
      piece_free(&e.piece);
      return -1;
    }
    add_elem(f, e);
    return 0;
  default: {
    char *d = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    buf_append(raw, d, strlen(d));
    free(d);
    return 0;
  }
  }
}

fmt_t *fmt_parse_json(json_t *obj, int omit_empty_values, char *err, size_t errlen) {
  if (!json_is_object(obj)) {
    snprintf(err, errlen, "json_format must be an object");
    return NULL;
  }
  fmt_t *f = calloc(1, sizeof(*f));
  if (f == NULL) abort();
  f->json = 1;
  f->omit_empty = omit_empty_values;
  buf_t raw;
  buf_init(&raw);
  if (build_json(f, obj, &raw, err, errlen) != 0) {
    buf_free(&raw);
    fmt_free(f);
    return NULL;
  }
  flush_raw(f, &raw);
  buf_free(&raw);
  return f;
}

void fmt_free(fmt_t *f) {
  if (f == NULL) return;
  piece_free(&f->text);
  for (size_t i = 0; i < f->nelems; i++) {
    free(f->elems[i].raw);
    piece_free(&f->elems[i].piece);
  }
  free(f->elems);
  free(f);
}

int fmt_is_json(const fmt_t *f) { return f->json; }

void fmt_set_omit_empty(fmt_t *f, int omit) { f->omit_empty = omit; }

/* ---- evaluation: each operator yields a typed value (formatValue) ---- */

static json_t *header_value(const hmap_t *m, const seg_t *s) {
  if (m == NULL) return NULL;
  const char *v = hmap_get_str(m, s->text);
  if (v == NULL && s->alt) v = hmap_get_str(m, s->alt);
  return v ? json_string(v) : NULL;
}

/* Envoy prints numbers with fmt's shortest form: an integral double has no
 * ".0" (json/json_streamer.h addNumber). */
static void integral_numbers(json_t *v) {
  if (json_is_object(v)) {
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
      if (json_is_real(x) && json_real_value(x) == (double)(json_int_t)json_real_value(x))
        json_object_set_new(v, k, json_integer((json_int_t)json_real_value(x)));
      else integral_numbers(x);
    }
  } else if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v); i++) {
      json_t *x = json_array_get(v, i);
      if (json_is_real(x) && json_real_value(x) == (double)(json_int_t)json_real_value(x))
        json_array_set_new(v, i, json_integer((json_int_t)json_real_value(x)));
      else integral_numbers(x);
    }
  }
}

static json_t *metadata_value(const fmt_ctx_t *c, const seg_t *s) {
  if (c->md == NULL) return NULL;
  json_t *v = md_ns_json(c->md, s->text);
  for (size_t i = 0; v != NULL && i < s->npath; i++) {
    json_t *next = json_is_object(v) ? json_object_get(v, s->path[i]) : NULL;
    if (next) json_incref(next);
    json_decref(v);
    v = next;
  }
  if (json_is_real(v) && json_real_value(v) == (double)(json_int_t)json_real_value(v)) {
    json_t *i = json_integer((json_int_t)json_real_value(v));
    json_decref(v);
    return i;
  }
  integral_numbers(v);
  return v;
}

static json_t *num_or_null(int64_t v) { return v < 0 ? NULL : json_integer(v); }

static json_t *eval(const seg_t *s, const fmt_ctx_t *c) {
  char tmp[256];
  switch (s->op) {
  case OP_LITERAL: return json_string(s->text);
  case OP_REQ: return header_value(c->req, s);
  case OP_RESP: return header_value(c->resp, s);
  case OP_TRAILER: return header_value(c->resp_trailers, s);
  case OP_RESPONSE_CODE: return json_integer(c->code);
  case OP_RESPONSE_CODE_DETAILS: return c->details && c->details[0] ? json_string(c->details) : NULL;
  case OP_RESPONSE_FLAGS:
  case OP_RESPONSE_FLAGS_LONG:
    respflags_string(c->flags, s->op == OP_RESPONSE_FLAGS_LONG, tmp, sizeof(tmp));
    return json_string(tmp);
  case OP_LOCAL_REPLY_BODY: return json_stringn(c->local_body ? c->local_body : "", c->local_body_len);
  case OP_DYNAMIC_METADATA: return metadata_value(c, s);
  case OP_UPSTREAM_HOST: return c->upstream_host && c->upstream_host[0] ? json_string(c->upstream_host) : NULL;
  case OP_UPSTREAM_CLUSTER: return c->cluster && c->cluster[0] ? json_string(c->cluster) : NULL;
  case OP_ROUTE_NAME: return c->route_name && c->route_name[0] ? json_string(c->route_name) : NULL;
  case OP_DURATION: return num_or_null(c->duration_ms);
  case OP_REQUEST_DURATION: return num_or_null(c->request_duration_ms);
  case OP_RESPONSE_DURATION: return num_or_null(c->response_duration_ms);
  case OP_START_TIME: {
    /* the default format, %Y-%m-%dT%H:%M:%E3SZ */
    time_t sec = (time_t)(c->start_wall_ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(tmp + n, sizeof(tmp) - n, ".%03uZ", (unsigned)(c->start_wall_ms % 1000));
    return json_string(tmp);
  }
  case OP_BYTES_RECEIVED: return json_integer((json_int_t)c->bytes_received);
  case OP_BYTES_SENT: return json_integer((json_int_t)c->bytes_sent);
  case OP_PROTOCOL: return json_string(c->minor == 0 ? "HTTP/1.0" : "HTTP/1.1");
  case OP_DOWNSTREAM_REMOTE_ADDRESS: return c->remote ? json_string(c->remote) : NULL;
  case OP_DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT: {
    if (c->remote == NULL) return NULL;
    const char *colon = strrchr(c->remote, ':');
    return json_stringn(c->remote, colon ? (size_t)(colon - c->remote) : strlen(c->remote));
  }
  case OP_DOWNSTREAM_LOCAL_ADDRESS: return c->local ? json_string(c->local) : NULL;
  case OP_UPSTREAM_REQUEST_ATTEMPT_COUNT: return json_integer(c->attempts);
  case OP_UPSTREAM_LOCAL_ADDRESS: return c->upstream_local && c->upstream_local[0] ? json_string(c->upstream_local) : NULL;
  case OP_UPSTREAM_TRANSPORT_FAILURE_REASON:
    return c->transport_failure && c->transport_failure[0] ? json_string(c->transport_failure) : NULL;
  /* SNI: none on the host's plain-text listeners */
  case OP_REQUESTED_SERVER_NAME: return NULL;
  /* set by network filters that close a connection (RBAC, ...): the host
   * runs only the HTTP connection manager, which sets none */
  case OP_CONNECTION_TERMINATION_DETAILS: return NULL;
  }
  return NULL;
}

/* A value as text: strings raw, other JSON values serialized. */
static void append_text(buf_t *out, json_t *v, size_t maxlen) {
  size_t start = out->len;
  if (json_is_string(v)) {
    buf_append(out, json_string_value(v), json_string_length(v));
  } else {
    char *d = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    buf_append(out, d, strlen(d));
    free(d);
  }
  if (maxlen > 0 && out->len - start > maxlen) out->len = start + maxlen;
}

static const char kUnspecified[] = "-"; /* DefaultUnspecifiedValueStringView */

static void render_text_piece(const piece_t *p, const fmt_ctx_t *c, int omit_empty, buf_t *out) {
  for (size_t i = 0; i < p->n; i++) {
    json_t *v = eval(&p->segs[i], c);
    if (v == NULL || json_is_null(v)) {
      if (!omit_empty) buf_append(out, kUnspecified, 1);
    } else {
      append_text(out, v, p->segs[i].maxlen);
    }
    json_decref(v);
  }
}

void fmt_render(const fmt_t *f, const fmt_ctx_t *c, buf_t *out) {
  if (!f->json) {
    render_text_piece(&f->text, c, f->omit_empty, out);
    return;
  }
  for (size_t i = 0; i < f->nelems; i++) {
    const jelem_t *e = &f->elems[i];
    if (e->raw) {
      buf_append(out, e->raw, strlen(e->raw));
      continue;
    }
    if (e->piece.n == 1 && e->piece.segs[0].op != OP_LITERAL) {
      /* a single operator keeps its type (formatValue) */
      json_t *v = eval(&e->piece.segs[0], c);
      if (v != NULL && json_is_string(v) && e->piece.segs[0].maxlen > 0 &&
          json_string_length(v) > e->piece.segs[0].maxlen) {
        json_t *t = json_stringn(json_string_value(v), e->piece.segs[0].maxlen);
        json_decref(v);
        v = t;
      }
      char *d = json_dumps(v ? v : json_null(), JSON_ENCODE_ANY | JSON_COMPACT);
      buf_append(out, d, strlen(d));
      free(d);
      json_decref(v);
      continue;
    }
    buf_t s;
    buf_init(&s);
    render_text_piece(&e->piece, c, f->omit_empty, &s);
    json_str(out, s.data ? s.data : "", s.len);
    buf_free(&s);
  }
  buf_append(out, "\n", 1);
}
