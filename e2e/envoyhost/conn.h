/* A downstream HTTP/1.1 connection: Envoy's HTTP/1 server codec plus the
 * connection-level half of the HTTP connection manager. One request at a
 * time (http1/codec_impl.cc pauses parsing until the response is done);
 * the socket is read while a request is in flight so a client that goes
 * away resets its stream at once (ConnectionManagerImpl::onEvent RemoteClose);
 * "connection: close" and a close after the response when the request asked
 * for it, the connection drains, or the response finished before the request
 * did (conn_manager_impl.cc:1984-2004). */
#ifndef ENVOYHOST_CONN_H
#define ENVOYHOST_CONN_H

#include <stddef.h>

#include "buffer.h"
#include "h1parse.h"
#include "headermap.h"
#include "listener.h"
#include "worker.h"

struct stream;
struct bufferevent;
struct event;

typedef struct dconn {
  worker_t *w;
  listener_t *lis;
  chain_t *chain;
  struct bufferevent *bev;
  h1p_t p;
  struct stream *st;
  obuf_t pending; /* body bytes parsed in this read, delivered together */
  int req_complete, end_delivered, resp_done;
  int close_after, closed, draining, drain_counted, drain_closed;
  int paused;
  int out_chunked, out_head, out_no_body;
  struct event *hdr_timer, *resume_ev;
  char peer[80], local[80];
  int refs;
  struct dconn *prev, *next;
} dconn_t;

/* A new accepted socket on l. */
void conn_accept(worker_t *w, listener_t *l, int fd);

/* What the stream's encoder writes (the HTTP/1 response encoder). */
void conn_send_100_continue(dconn_t *c);
void conn_encode_headers(dconn_t *c, hmap_t *h, int end_stream);
void conn_encode_data(dconn_t *c, const obuf_t *data, int end_stream);
void conn_encode_trailers(dconn_t *c, const hmap_t *t);
/* The stream is gone (reset or done): the connection moves on or closes. */
void conn_stream_reset(dconn_t *c);
/* Flow control from the stream's decoder buffers. */
void conn_read_disable(dconn_t *c, int disable);
/* Drain: answer the current request with connection: close, or close now if idle. */
void conn_drain(dconn_t *c);
void conn_close(dconn_t *c);

#endif
