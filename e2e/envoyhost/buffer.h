/* Byte buffers: a flat one for the host's own strings, Envoy's
 * Buffer::OwnedImpl for body bytes, and the golang filter's BufferList
 * (doDataList), reduced to what the Go filter state machine needs. */
#ifndef ENVOYHOST_BUFFER_H
#define ENVOYHOST_BUFFER_H

#include <stddef.h>
#include <stdint.h>

/* A flat growable byte string (metadata values, protobuf, rendered text).
 * Body bytes live in obuf_t, below. Views built as {p, n, n} own nothing. */
typedef struct buf {
  char *data;
  size_t len, cap;
} buf_t;

void buf_init(buf_t *b);
void buf_free(buf_t *b);
void buf_append(buf_t *b, const void *p, size_t n);

/* obuf_t: Envoy's Buffer::OwnedImpl (source/common/buffer/buffer_impl.{h,cc}),
 * the buffer every body byte lives in between the codec and the filters: a
 * list of slices, so that moving a buffer into another moves slices instead
 * of bytes. Slice i holds base[data..end) of cap bytes (Slice's data_,
 * reservable_ and capacity_); slices [head, head+n) of s are in use; len is
 * the total (length_). */
typedef struct oslice {
  char *base;
  size_t cap, data, end;
} oslice_t;

typedef struct obuf {
  oslice_t *s;
  size_t head, n, cap;
  size_t len;
} obuf_t;

void obuf_init(obuf_t *o);
void obuf_free(obuf_t *o);
/* add(): copies into the last slice's room, then into new slices */
void obuf_add(obuf_t *o, const void *p, size_t n);
/* prepend(string_view): copies into the room in front of the first slice,
 * then into new slices in front */
void obuf_prepend(obuf_t *o, const void *p, size_t n);
void obuf_drain(obuf_t *o, size_t n);
/* move(): takes src's slices (small ones are copied into dst's last slice
 * when they fit, coalesceOrAddSlice) and empties src */
void obuf_move(obuf_t *dst, obuf_t *src);
/* the golang filter's copyBuffer: every slice, in order, into out */
void obuf_copy_out(const obuf_t *o, void *out);
/* i-th slice in use: *p and its length */
size_t obuf_slice(const obuf_t *o, size_t i, const char **p);
/* writes every slice to a libevent output buffer (a connection's write) */
struct evbuffer;
void evbuffer_add_obuf(struct evbuffer *out, const obuf_t *o);

/* BufferList: the chunks currently lent to Go. Each pushed chunk gets its own
 * heap OwnedImpl (processor_state.cc BufferList::push) whose address is the buffer id Go passes back to GetBuffer &co.
 * bytes counts pushed bytes only (Go's edits do not update it), exactly like
 * Envoy's BufferList::bytes_, which continueDoData() relies on. */
typedef struct buflist {
  obuf_t **items;
  size_t n, cap;
  uint64_t bytes;
} buflist_t;

obuf_t *buflist_push(buflist_t *l, obuf_t *data);
void buflist_move_out(buflist_t *l, obuf_t *dst);
void buflist_clear_latest(buflist_t *l);
void buflist_clear_all(buflist_t *l);
int buflist_check_existing(const buflist_t *l, const obuf_t *b);
int buflist_empty(const buflist_t *l);
void buflist_free(buflist_t *l);

#endif
