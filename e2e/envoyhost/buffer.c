#include "buffer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

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

/* ---- obuf_t: Buffer::OwnedImpl ---- */

/* CopyThreshold (buffer_impl.cc:19): move() copies a slice smaller than
 * this into the destination's last slice when it fits, else takes it */
#define COPY_THRESHOLD 512

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (p == NULL) {
    fprintf(stderr, "envoyhost: out of memory\n");
    abort();
  }
  return p;
}

/* Slice::sliceSize (buffer_impl.h:353): whole 4 KiB pages */
static size_t slice_size(size_t n) { return (n + 4095) / 4096 * 4096; }

void obuf_init(obuf_t *o) { memset(o, 0, sizeof(*o)); }

void obuf_free(obuf_t *o) {
  for (size_t i = 0; i < o->n; i++) free(o->s[o->head + i].base);
  free(o->s);
  memset(o, 0, sizeof(*o));
}

/* a free place at the back (front) of the slice array, as the deque
 * slices_ has */
static oslice_t *push_back_slot(obuf_t *o) {
  if (o->head + o->n == o->cap) {
    if (o->head > 0) {
      memmove(o->s, o->s + o->head, o->n * sizeof(*o->s));
      o->head = 0;
    } else {
      o->cap = o->cap ? o->cap * 2 : 4;
      o->s = realloc(o->s, o->cap * sizeof(*o->s));
      if (o->s == NULL) abort();
    }
  }
  return &o->s[o->head + o->n++];
}

static oslice_t *push_front_slot(obuf_t *o) {
  if (o->head == 0) {
    size_t room = o->cap > o->n ? o->cap - o->n : 0;
    if (room == 0) {
      o->cap = o->cap ? o->cap * 2 : 4;
      o->s = realloc(o->s, o->cap * sizeof(*o->s));
      if (o->s == NULL) abort();
      room = o->cap - o->n;
    }
    /* leave the whole room in front: prepends come in runs */
    memmove(o->s + room, o->s, o->n * sizeof(*o->s));
    o->head = room;
  }
  o->head--;
  o->n++;
  return &o->s[o->head];
}

static oslice_t new_slice(size_t min) {
  oslice_t s = {NULL, slice_size(min), 0, 0};
  s.base = xmalloc(s.cap);
  return s;
}

static oslice_t *back(obuf_t *o) { return &o->s[o->head + o->n - 1]; }

/* OwnedImpl::addImpl (buffer_impl.cc:48-61) with Slice::append */
void obuf_add(obuf_t *o, const void *p, size_t n) {
  const char *src = p;
  int new_slice_needed = o->n == 0;
  while (n != 0) {
    if (new_slice_needed) *push_back_slot(o) = new_slice(n);
    oslice_t *s = back(o);
    size_t k = s->cap - s->end < n ? s->cap - s->end : n;
    memcpy(s->base + s->end, src, k);
    s->end += k;
    src += k;
    n -= k;
    o->len += k;
    new_slice_needed = 1;
  }
}

/* OwnedImpl::prepend(string_view) (buffer_impl.cc:91-103) with
 * Slice::prepend (buffer_impl.cc:27-46): an empty slice takes the bytes at
 * its very end; a slice with no room in front takes none */
void obuf_prepend(obuf_t *o, const void *p, size_t n) {
  const char *src = p;
  int new_slice_needed = o->n == 0;
  while (n != 0) {
    if (new_slice_needed) *push_front_slot(o) = new_slice(n);
    oslice_t *s = &o->s[o->head];
    size_t k;
    if (s->end == s->data) {
      k = s->cap - s->end < n ? s->cap - s->end : n;
      s->end = s->cap;
      s->data = s->cap - k;
    } else {
      k = s->data < n ? s->data : n;
      s->data -= k;
    }
    memcpy(s->base + s->data, src + n - k, k);
    n -= k;
    o->len += k;
    new_slice_needed = 1;
  }
}

static void pop_front(obuf_t *o) {
  free(o->s[o->head].base);
  o->head++;
  o->n--;
  if (o->n == 0) o->head = 0;
}

/* OwnedImpl::drainImpl (buffer_impl.cc:184-205) with Slice::drain, which
 * resets a slice drained empty (buffer_impl.h:176-185) */
void obuf_drain(obuf_t *o, size_t n) {
  while (n != 0 && o->n > 0) {
    oslice_t *s = &o->s[o->head];
    size_t size = s->end - s->data;
    if (size <= n) {
      pop_front(o);
      o->len -= size;
      n -= size;
    } else {
      s->data += n;
      o->len -= n;
      n = 0;
    }
  }
  while (o->n > 0 && o->s[o->head].end == o->s[o->head].data) pop_front(o);
}

/* OwnedImpl::move (buffer_impl.cc:334-347) and coalesceOrAddSlice
 * (buffer_impl.cc:312-332) */
void obuf_move(obuf_t *dst, obuf_t *src) {
  for (size_t i = 0; i < src->n; i++) {
    oslice_t *s = &src->s[src->head + i];
    size_t size = s->end - s->data;
    if (dst->n > 0 && size < COPY_THRESHOLD && back(dst)->cap - back(dst)->end >= size) {
      obuf_add(dst, s->base + s->data, size);
      free(s->base);
    } else {
      *push_back_slot(dst) = *s;
      dst->len += size;
    }
  }
  src->head = src->n = 0;
  src->len = 0;
}

/* Filter::copyBuffer (contrib/golang/filters/http/source/golang_filter.cc:830-835) */
void obuf_copy_out(const obuf_t *o, void *out) {
  char *d = out;
  for (size_t i = 0; i < o->n; i++) {
    const oslice_t *s = &o->s[o->head + i];
    memcpy(d, s->base + s->data, s->end - s->data);
    d += s->end - s->data;
  }
}

size_t obuf_slice(const obuf_t *o, size_t i, const char **p) {
  const oslice_t *s = &o->s[o->head + i];
  *p = s->base + s->data;
  return s->end - s->data;
}

void evbuffer_add_obuf(struct evbuffer *out, const obuf_t *o) {
  for (size_t i = 0; i < o->n; i++) {
    const oslice_t *s = &o->s[o->head + i];
    evbuffer_add(out, s->base + s->data, s->end - s->data);
  }
}

/* ---- BufferList (processor_state.cc:13-40) ---- */

obuf_t *buflist_push(buflist_t *l, obuf_t *data) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    obuf_t **items = realloc(l->items, cap * sizeof(*items));
    if (items == NULL) abort();
    l->items = items;
    l->cap = cap;
  }
  obuf_t *b = calloc(1, sizeof(*b));
  if (b == NULL) abort();
  l->bytes += data->len;
  obuf_move(b, data);
  l->items[l->n++] = b;
  return b;
}

void buflist_move_out(buflist_t *l, obuf_t *dst) {
  for (size_t i = 0; i < l->n; i++) {
    obuf_move(dst, l->items[i]);
    obuf_free(l->items[i]);
    free(l->items[i]);
  }
  l->n = 0;
  l->bytes = 0;
}

void buflist_clear_latest(buflist_t *l) {
  if (l->n == 0) return;
  obuf_t *b = l->items[--l->n];
  l->bytes -= b->len <= l->bytes ? b->len : l->bytes;
  obuf_free(b);
  free(b);
}

void buflist_clear_all(buflist_t *l) {
  for (size_t i = 0; i < l->n; i++) {
    obuf_free(l->items[i]);
    free(l->items[i]);
  }
  l->n = 0;
  l->bytes = 0;
}

int buflist_check_existing(const buflist_t *l, const obuf_t *b) {
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
