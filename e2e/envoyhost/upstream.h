/* Per-worker pool of keep-alive connections to upstream endpoints, like an
 * Envoy cluster's HTTP/1 connection pool (one pool per worker). */
#ifndef ENVOYHOST_UPSTREAM_H
#define ENVOYHOST_UPSTREAM_H

#include <stdint.h>

#include "worker.h"

struct evhttp_connection;

struct evhttp_connection *upstream_pool_get(worker_t *w, const char *host, uint16_t port);
/* Returns conn to the idle list (evhttp reconnects a reset connection on its
 * next request, so a failed one is reusable too). */
void upstream_pool_put(worker_t *w, struct evhttp_connection *conn, int ok);

/* TCP_NODELAY on conn's socket once it has one, as Envoy sets on every
 * connection: without it Nagle + delayed ACK add 40 ms to writes that end
 * in a partial segment (a 64 KiB body, an SSE event). */
void upstream_set_nodelay(struct evhttp_connection *conn);

#endif
