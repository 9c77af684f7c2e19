#include "buffer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void buf_reserve(buf_t *b, size_t need) {
  if (need <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;
  char *p = realloc(b->data, cap);
  if (p == NULL) {
    fprintf(stderr, "envoyhost: out of memory\n");
    abort();
  }
  b->data = p;
  b->cap = cap;
}

void buf_init(buf_t *b) { memset(b, 0, sizeof(*b)); }

void buf_free(buf_t *b) {
  free(b->data);
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
  buf_reserve(b, b->len + n);
  memmove(b->data + n, b->data, b->len);
  memcpy(b->data, p, n);
  b->len += n;
}

void buf_drain(buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void buf_move(buf_t *dst, buf_t *src) {
  if (src->len == 0) return;
  if (dst->len == 0) {
    /* steal the storage: the common case, and it keeps large bodies copy-free */
    char *d = dst->data;
    size_t c = dst->cap;
    *dst = *src;
    src->data = d;
    src->cap = c;
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
