#include "h1parse.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Response code details of Envoy's HTTP/1 codec (codec_impl.cc:32-60). */
static const char kTooManyHeaders[] = "http1.too_many_headers";
static const char kHeadersTooLarge[] = "http1.headers_too_large";
static const char kCodecError[] = "http1.codec_error";
static const char kInvalidChars[] = "http1.invalid_characters";
static const char kInvalidTE[] = "http1.invalid_transfer_encoding";
static const char kCLAndChunked[] = "http1.content_length_and_chunked_not_allowed";
static const char kInvalidCL[] = "http1.content_length_not_allowed";
static const char kInvalidUnderscore[] = "http1.unexpected_underscore";

enum { kMaxChunkLine = 1024 };

void h1p_init(h1p_t *p, int kind) {
  memset(p, 0, sizeof(*p));
  p->kind = kind;
  hmap_init(&p->head.headers);
  hmap_init(&p->trailers);
}

void h1p_free(h1p_t *p) {
  free(p->head.target);
  hmap_free(&p->head.headers);
  hmap_free(&p->trailers);
}

void h1p_reset(h1p_t *p) {
  size_t mb = p->max_header_bytes, mh = p->max_headers;
  int kind = p->kind, us = p->underscores;
  h1p_free(p);
  h1p_init(p, kind);
  p->max_header_bytes = mb;
  p->max_headers = mh;
  p->underscores = us;
}

int h1p_idle(const h1p_t *p) { return p->state == H1S_HEAD && p->head_bytes == 0; }

static int fail(h1p_t *p, int status, const char *details) {
  p->state = H1S_ERROR;
  p->err_status = status;
  p->err_details = details;
  return -1;
}

static int is_tchar(unsigned char c) {
  return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static char *trim(char *s, size_t *n) {
  while (*n > 0 && (s[0] == ' ' || s[0] == '\t')) {
    s++;
    (*n)--;
  }
  while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\t')) (*n)--;
  return s;
}

static int has_token(const char *v, const char *tok) {
  size_t tl = strlen(tok);
  const char *p = v;
  while (*p) {
    while (*p == ' ' || *p == '\t' || *p == ',') p++;
    const char *e = p;
    while (*e && *e != ',') e++;
    size_t n = (size_t)(e - p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    if (n == tl && strncasecmp(p, tok, tl) == 0) return 1;
    p = e;
  }
  return 0;
}

/* One header or trailer line into m, with the codec's checks: no space
 * before the colon, no obs-fold, tchar names, no CTLs in values; limits on
 * count and byteSize (codec_impl.cc:555-609). */
static int add_field(h1p_t *p, hmap_t *m, char *line, size_t len) {
  if (line[0] == ' ' || line[0] == '\t') return fail(p, 400, kCodecError); /* obs-fold */
  char *colon = memchr(line, ':', len);
  if (colon == NULL || colon == line) return fail(p, 400, kCodecError);
  size_t klen = (size_t)(colon - line);
  for (size_t i = 0; i < klen; i++)
    if (!is_tchar((unsigned char)line[i])) return fail(p, 400, kInvalidChars);
  size_t vlen = len - klen - 1;
  char *v = trim(colon + 1, &vlen);
  for (size_t i = 0; i < vlen; i++) {
    unsigned char c = (unsigned char)v[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) return fail(p, 400, kInvalidChars);
  }
  /* ServerConnectionImpl::checkHeaderNameForUnderscores, for headers and
   * trailers alike (http1/codec_impl.cc:550-551, 1428-1450): drop the
   * field, or reject the request 400 and close */
  if (p->underscores != H1_UNDERSCORE_ALLOW && memchr(line, '_', klen) != NULL) {
    if (p->underscores == H1_UNDERSCORE_REJECT) return fail(p, 400, kInvalidUnderscore);
    return 0;
  }
  hmap_add(m, line, klen, v, vlen);
  if (p->max_headers > 0 && m->n > p->max_headers) return fail(p, 431, kTooManyHeaders);
  if (p->max_header_bytes > 0 && hmap_byte_size(m) > p->max_header_bytes) return fail(p, 431, kHeadersTooLarge);
  return 0;
}

static int parse_first_line(h1p_t *p, char *line, size_t len) {
  h1_head_t *h = &p->head;
  char *sp1 = memchr(line, ' ', len);
  if (sp1 == NULL) return fail(p, 400, kCodecError);
  if (p->kind == H1_REQUEST) {
    char *sp2 = memrchr(line, ' ', len);
    if (sp2 == sp1 || (size_t)(sp1 - line) >= sizeof(h->method)) return fail(p, 400, kCodecError);
    for (char *c = line; c < sp1; c++)
      if (!is_tchar((unsigned char)*c)) return fail(p, 400, kCodecError);
    memcpy(h->method, line, (size_t)(sp1 - line));
    h->method[sp1 - line] = 0;
    size_t tl = (size_t)(sp2 - sp1 - 1);
    if (tl == 0) return fail(p, 400, kCodecError);
    h->target = strndup(sp1 + 1, tl);
    if (h->target == NULL) abort();
    for (size_t i = 0; i < tl; i++)
      if ((unsigned char)h->target[i] <= 0x20 || h->target[i] == 0x7f) return fail(p, 400, kInvalidChars);
    size_t vl = len - (size_t)(sp2 + 1 - line);
    if (vl != 8 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
      return fail(p, 400, kCodecError);
    h->minor = sp2[8] - '0';
  } else {
    if ((size_t)(sp1 - line) != 8 || strncmp(line, "HTTP/1.", 7) != 0) return fail(p, 400, kCodecError);
    h->minor = line[7] == '0' ? 0 : 1;
    if (len < 12 || !isdigit((unsigned char)sp1[1]) || !isdigit((unsigned char)sp1[2]) ||
        !isdigit((unsigned char)sp1[3]))
      return fail(p, 400, kCodecError);
    h->status = (sp1[1] - '0') * 100 + (sp1[2] - '0') * 10 + (sp1[3] - '0');
  }
  return 0;
}

/* Framing after the head (RFC 9112 section 6, as Envoy's codec applies it). */
static int frame_body(h1p_t *p) {
  h1_head_t *h = &p->head;
  const char *te = NULL, *cl = NULL;
  for (size_t i = 0; i < h->headers.n; i++) {
    const hentry_t *e = &h->headers.e[i];
    if (strcmp(e->key, "transfer-encoding") == 0) te = e->value;
    else if (strcmp(e->key, "content-length") == 0) {
      if (cl != NULL && strcmp(cl, e->value) != 0) return fail(p, 400, kInvalidCL);
      cl = e->value;
    }
  }
  const char *conn = hmap_get_str(&h->headers, "connection");
  h->keep_alive = h->minor == 1 ? !(conn && has_token(conn, "close")) : (conn && has_token(conn, "keep-alive"));
  if (te != NULL) {
    if (strcasecmp(te, "chunked") != 0) return fail(p, 501, kInvalidTE);
    if (cl != NULL) return fail(p, 400, kCLAndChunked);
    h->chunked = 1;
  } else if (cl != NULL) {
    char *end;
    if (cl[0] == 0 || !isdigit((unsigned char)cl[0])) return fail(p, 400, kInvalidCL);
    h->content_length = strtoull(cl, &end, 10);
    if (*end != 0) return fail(p, 400, kInvalidCL);
    h->has_content_length = 1;
  }
  if (p->kind == H1_RESPONSE &&
      (p->response_to_head || h->status == 204 || h->status == 304 || (h->status >= 100 && h->status < 200))) {
    p->state = H1S_DONE;
  } else if (h->chunked) {
    p->state = H1S_CHUNK_SIZE;
  } else if (h->has_content_length) {
    p->remaining = h->content_length;
    p->state = p->remaining > 0 ? H1S_BODY_LENGTH : H1S_DONE;
  } else if (p->kind == H1_RESPONSE) {
    p->state = H1S_BODY_EOF; /* delimited by the connection closing */
    h->keep_alive = 0;
  } else {
    p->state = H1S_DONE;
  }
  return 0;
}

static int read_head(h1p_t *p, struct evbuffer *in) {
  for (;;) {
    size_t n = 0;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
    if (line == NULL) {
      size_t pending = evbuffer_get_length(in);
      /* BalsaParser's max_header_length covers the whole head
       * (codec_impl.cc:537), also while the last line is incomplete */
      if (p->max_header_bytes > 0 && p->head_bytes + pending > p->max_header_bytes)
        return fail(p, 431, kHeadersTooLarge);
      if (p->max_header_bytes == 0 && pending > (1u << 20)) return fail(p, 400, kHeadersTooLarge);
      return 0;
    }
    int empty_first = p->head_bytes == 0 && n == 0;
    p->head_bytes += n + 2;
    if (p->max_header_bytes > 0 && p->head_bytes > p->max_header_bytes) {
      free(line);
      return fail(p, 431, kHeadersTooLarge);
    }
    int rc = 0;
    if (empty_first) {
      p->head_bytes = 0; /* RFC 9112 2.2: ignore a CRLF before the request-line */
    } else if (p->head.method[0] == 0 && p->head.status == 0) {
      rc = parse_first_line(p, line, n);
    } else if (n == 0) {
      free(line);
      return frame_body(p) == 0 ? 1 : -1;
    } else {
      rc = add_field(p, &p->head.headers, line, n);
    }
    free(line);
    if (rc != 0) return -1;
  }
}

static int deliver(h1p_t *p, struct evbuffer *in, size_t n, const h1_callbacks_t *cb, void *arg) {
  const char *d = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
  int rc = cb->on_data(arg, d, n);
  evbuffer_drain(in, n);
  (void)p;
  return rc;
}

static int complete(h1p_t *p, const h1_callbacks_t *cb, void *arg) {
  p->state = H1S_DONE;
  if (p->saw_trailers && cb->on_trailers) {
    int rc = cb->on_trailers(arg, &p->trailers);
    if (rc != 0) return rc;
  }
  return cb->on_complete(arg);
}

int h1p_execute(h1p_t *p, struct evbuffer *in, const h1_callbacks_t *cb, void *arg) {
  for (;;) {
    int rc = 0;
    switch (p->state) {
    case H1S_HEAD: {
      int r = read_head(p, in);
      if (r <= 0) return r;
      rc = cb->on_head(arg, &p->head);
      if (rc == 0 && p->state == H1S_DONE) rc = complete(p, cb, arg);
      break;
    }
    case H1S_BODY_LENGTH:
    case H1S_BODY_EOF:
    case H1S_CHUNK_DATA: {
      size_t avail = evbuffer_get_length(in);
      if (avail == 0) return 0;
      size_t n = avail;
      if (p->state != H1S_BODY_EOF && n > p->remaining) n = (size_t)p->remaining;
      if (p->state != H1S_BODY_EOF) p->remaining -= n;
      int state = p->state;
      rc = deliver(p, in, n, cb, arg);
      if (rc == 0 && state == H1S_BODY_LENGTH && p->remaining == 0) rc = complete(p, cb, arg);
      else if (state == H1S_CHUNK_DATA && p->remaining == 0) p->state = H1S_CHUNK_CRLF;
      break;
    }
    case H1S_CHUNK_CRLF: {
      size_t n = 0;
      char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
      if (line == NULL) return evbuffer_get_length(in) > 2 ? fail(p, 400, kCodecError) : 0;
      free(line);
      if (n != 0) return fail(p, 400, kCodecError);
      p->state = H1S_CHUNK_SIZE;
      continue;
    }
    case H1S_CHUNK_SIZE: {
      size_t n = 0;
      char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
      if (line == NULL) return evbuffer_get_length(in) > kMaxChunkLine ? fail(p, 400, kCodecError) : 0;
      char *end;
      unsigned long long sz = strtoull(line, &end, 16);
      int bad = end == line || (*end != 0 && *end != ';' && *end != ' ' && *end != '\t') || sz > (1ull << 40);
      free(line);
      if (bad) return fail(p, 400, kCodecError);
      p->remaining = sz;
      p->state = sz == 0 ? H1S_TRAILERS : H1S_CHUNK_DATA;
      continue;
    }
    case H1S_TRAILERS: {
      size_t n = 0;
      char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
      if (line == NULL) return 0;
      if (n == 0) {
        free(line);
        rc = complete(p, cb, arg);
        break;
      }
      p->saw_trailers = 1;
      int r = add_field(p, &p->trailers, line, n);
      free(line);
      if (r != 0) return -1;
      continue;
    }
    case H1S_DONE:
    case H1S_ERROR:
      return p->state == H1S_ERROR ? -1 : 0;
    }
    if (rc < 0) return -1;
    if (rc > 0 || p->state == H1S_DONE) return 0;
  }
}

int h1p_eof(h1p_t *p, const h1_callbacks_t *cb, void *arg) {
  if (p->state != H1S_BODY_EOF) return 0;
  complete(p, cb, arg);
  return 1;
}
