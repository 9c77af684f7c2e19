/* Upstream HTTP/1.1 connections and their per-worker pool (an Envoy
 * cluster's HTTP/1 connection pool: one request per connection at a time,
 * keep-alive reuse, connect_timeout, TCP_NODELAY). The request streams out
 * as the router gets it; the response streams back through callbacks. */
#ifndef ENVOYHOST_UPSTREAM_H
#define ENVOYHOST_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"
#include "cluster.h"
#include "headermap.h"
#include "worker.h"

/* Why an upstream request ended without a whole response
 * (Http::StreamResetReason). */
enum { UP_CONNECT_FAILURE, UP_CONNECT_TIMEOUT, UP_CONNECTION_TERMINATION, UP_PROTOCOL_ERROR, UP_OVERFLOW };

typedef struct upreq_cb {
  void (*on_headers)(void *arg, int status, hmap_t *h, int end_stream);
  void (*on_data)(void *arg, const char *p, size_t n, int end_stream);
  void (*on_trailers)(void *arg, hmap_t *t);
  void (*on_reset)(void *arg, int reason, int after_headers);
} upreq_cb_t;

typedef struct upconn upconn_t;

/* A pooled or new connection to h for one request; NULL when the cluster's
 * max_connections is reached (overflow). */
upconn_t *up_start(worker_t *w, cluster_t *c, host_t *h, const upreq_cb_t *cb, void *arg);
/* head_request: the response has no body whatever its headers say. */
void up_send_headers(upconn_t *u, const hmap_t *h, int end_stream, int head_request);
void up_send_data(upconn_t *u, const obuf_t *data, int end_stream);
void up_send_trailers(upconn_t *u, const hmap_t *t);
/* The connection's local ip:port ("" before it is connected). */
const char *up_local_address(const upconn_t *u);
/* Resets the request: no more callbacks, the connection is closed. */
void up_cancel(upconn_t *u);

#endif
