#include "buffer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* HEADROOM is the room a buffer keeps in front of its bytes. Envoy's
 * OwnedImpl prepends by adding a slice in front (buffer_impl.cc prepend),
 * copying only what is prepended; a flat buffer can do the same while the
 * prepended bytes fit in front, which covers a filter that drains the
 * first bytes and prepends them edited, a few bytes longer (a rewritten
 * model name). */
#define HEADROOM 256

static void buf_reserve(buf_t *b, size_t need) {
  if (need <= b->cap) return;
  size_t keep = b->data == NULL || b->head > HEADROOM ? HEADROOM : b->head;
  if (b->data != NULL && b->head > keep) {
    /* drained far: give the room back to the end first */
    char *to = b->data - b->head + keep;
    memmove(to, b->data, b->len);
    b->data = to;
    b->cap += b->head - keep;
    b->head = keep;
    if (need <= b->cap) return;
  }
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;
  char *p = realloc(b->data == NULL ? NULL : b->data - b->head, keep + cap);
  if (p == NULL) {
    fprintf(stderr, "envoyhost: out of memory\n");
    abort();
  }
  b->data = p + keep;
  b->head = keep;
  b->cap = cap;
}

void buf_init(buf_t *b) { memset(b, 0, sizeof(*b)); }

void buf_free(buf_t *b) {
  if (b->data != NULL) free(b->data - b->head);
  memset(b, 0, sizeof(*b));
}

void buf_append(buf_t *b, const void *p, size_t n) {
  if (n == 0) return;
  buf_reserve(b, b->len + n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void buf_prepend(buf_t *b, const void *p, size_t n) {
  if (n == 0) return;
  if (n <= b->head) {
    b->data -= n;
    b->head -= n;
    b->cap += n;
    b->len += n;
    memcpy(b->data, p, n);
    return;
  }
  /* No room in front: one new allocation with p first (Envoy adds a
   * slice in front instead, copying only p; this copies the bytes once). */
  size_t need = b->len + n, cap = 256;
  while (cap < need) cap *= 2;
  char *d = malloc(cap);
  if (d == NULL) {
    fprintf(stderr, "envoyhost: out of memory\n");
    abort();
  }
  memcpy(d, p, n);
  if (b->len) memcpy(d + n, b->data, b->len);
  if (b->data != NULL) free(b->data - b->head);
  b->data = d;
  b->head = 0;
  b->cap = cap;
  b->len = need;
}

void buf_drain(buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  b->data += n;
  b->head += n;
  b->cap -= n;
  b->len -= n;
}

void buf_move(buf_t *dst, buf_t *src) {
  if (src->len == 0) return;
  if (dst->len == 0) {
    /* steal the storage: the common case, and it keeps large bodies copy-free */
    char *d = dst->data;
    size_t c = dst->cap, h = dst->head;
    *dst = *src;
    src->data = d;
    src->cap = c;
    src->head = h;
    src->len = 0;
    return;
  }
  buf_append(dst, src->data, src->len);
  src->len = 0;
}

buf_t *buflist_push(buflist_t *l, buf_t *data) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    buf_t **items = realloc(l->items, cap * sizeof(*items));
    if (items == NULL) abort();
    l->items = items;
    l->cap = cap;
  }
  buf_t *b = calloc(1, sizeof(*b));
  if (b == NULL) abort();
  l->bytes += data->len;
  buf_move(b, data);
  l->items[l->n++] = b;
  return b;
}

void buflist_move_out(buflist_t *l, buf_t *dst) {
  for (size_t i = 0; i < l->n; i++) {
    buf_move(dst, l->items[i]);
    buf_free(l->items[i]);
    free(l->items[i]);
  }
  l->n = 0;
  l->bytes = 0;
}

void buflist_clear_latest(buflist_t *l) {
  if (l->n == 0) return;
  buf_t *b = l->items[--l->n];
  l->bytes -= b->len <= l->bytes ? b->len : l->bytes;
  buf_free(b);
  free(b);
}

void buflist_clear_all(buflist_t *l) {
  for (size_t i = 0; i < l->n; i++) {
    buf_free(l->items[i]);
    free(l->items[i]);
  }
  l->n = 0;
  l->bytes = 0;
}

int buflist_check_existing(const buflist_t *l, const buf_t *b) {
  for (size_t i = 0; i < l->n; i++)
    if (l->items[i] == b) return 1;
  return 0;
}

int buflist_empty(const buflist_t *l) { return l->bytes == 0; }

void buflist_free(buflist_t *l) {
  buflist_clear_all(l);
  free(l->items);
  memset(l, 0, sizeof(*l));
}
