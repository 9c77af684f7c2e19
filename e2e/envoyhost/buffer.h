/* Byte buffers: Envoy's Buffer::OwnedImpl and the golang filter's BufferList
 * (doDataList), reduced to what the Go filter state machine needs. */
#ifndef ENVOYHOST_BUFFER_H
#define ENVOYHOST_BUFFER_H

#include <stddef.h>
#include <stdint.h>

/* data..data+len are the bytes; cap counts from data. head is how many
 * drained bytes of the allocation lie before data: draining from the front
 * moves data instead of the bytes, and a prepend that fits there is one
 * copy of what is prepended, as Envoy's OwnedImpl (slices with reserved
 * front space, buffer_impl.h) does. Views built as {p, n, n, 0} own nothing. */
typedef struct buf {
  char *data;
  size_t len, cap;
  size_t head;
} buf_t;

void buf_init(buf_t *b);
void buf_free(buf_t *b);
void buf_append(buf_t *b, const void *p, size_t n);
void buf_prepend(buf_t *b, const void *p, size_t n);
void buf_drain(buf_t *b, size_t n);
/* Appends all of src to dst and empties src (Buffer::Instance::move). */
void buf_move(buf_t *dst, buf_t *src);

/* BufferList: the chunks currently lent to Go. Each pushed chunk gets its own
 * heap buffer whose address is the buffer id Go passes back to GetBuffer &co.
 * bytes counts pushed bytes only (Go's edits do not update it), exactly like
 * Envoy's BufferList::bytes_, which continueDoData() relies on. */
typedef struct buflist {
  buf_t **items;
  size_t n, cap;
  uint64_t bytes;
} buflist_t;

buf_t *buflist_push(buflist_t *l, buf_t *data);
void buflist_move_out(buflist_t *l, buf_t *dst);
void buflist_clear_latest(buflist_t *l);
void buflist_clear_all(buflist_t *l);
int buflist_check_existing(const buflist_t *l, const buf_t *b);
int buflist_empty(const buflist_t *l);
void buflist_free(buflist_t *l);

#endif
