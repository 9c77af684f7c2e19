/* Listeners as Envoy's listener manager runs them: one socket per listener
 * name shared by every worker; an update that changes only the filter chain
 * keeps the socket and drains the connections of the old chain
 * (listener_impl.cc:1146-1172, lds.rst "filter chain only update"); a
 * changed address or a removed listener drains all of them. Connections of
 * a draining chain get "connection: close" on their next response (HTTP/1)
 * and idle ones close at once; what is left after the drain time is closed.
 * Drained connections are counted in listener.<name>.downstream_cx_drained. */
#ifndef ENVOYHOST_LISTENER_H
#define ENVOYHOST_LISTENER_H

#include <stdatomic.h>

#include "chain.h"
#include "worker.h"

struct evconnlistener;

typedef struct listener {
  char *name;
  char want[80]; /* the address LDS gave */
  char bound[80];
  int fd;
  chain_t *chain; /* the current chain, under the registry lock */
  struct evconnlistener **evl; /* per worker, touched on that worker only */
  void **accept_tasks;
  atomic_int stopping_workers;
  atomic_long *cx_total, *cx_active, *cx_drained, *cx_destroy_drain;
} listener_t;

/* Binds addr (or the --bind-listeners override); NULL with err on failure. */
listener_t *listener_bind(const char *name, const char *addr, char *err, size_t errlen);
/* Starts accepting on every worker (posted). */
void listener_start(listener_t *l);
/* Stops accepting and closes the socket once every worker let go. */
void listener_stop(listener_t *l);
/* Drains every connection still on chain (posted to each worker). */
void listener_drain_chain(chain_t *old);

/* The chain a new connection of l gets (ref'd), or NULL when l stopped. */
chain_t *listener_chain(listener_t *l);

extern long g_drain_time_ms;

#endif
