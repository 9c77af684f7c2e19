#include "upstream.h"

#include <event2/bufferevent.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"

enum { kMaxIdlePerHost = 256 };

typedef struct pool_host {
  char host[64];
  uint16_t port;
  struct evhttp_connection **idle;
  size_t n, cap;
  struct pool_host *next;
} pool_host_t;

typedef struct upstream_pool {
  pool_host_t *hosts;
} upstream_pool_t;

static pool_host_t *find_host(worker_t *w, const char *host, uint16_t port, int create) {
  if (w->pool == NULL) {
    w->pool = calloc(1, sizeof(upstream_pool_t));
    if (w->pool == NULL) abort();
  }
  for (pool_host_t *h = w->pool->hosts; h != NULL; h = h->next)
    if (h->port == port && strcmp(h->host, host) == 0) return h;
  if (!create) return NULL;
  pool_host_t *h = calloc(1, sizeof(*h));
  if (h == NULL) abort();
  strncpy(h->host, host, sizeof(h->host) - 1);
  h->port = port;
  h->next = w->pool->hosts;
  w->pool->hosts = h;
  return h;
}

void upstream_set_nodelay(struct evhttp_connection *conn) {
  evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(conn));
  int one = 1;
  if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

struct evhttp_connection *upstream_pool_get(worker_t *w, const char *host, uint16_t port) {
  pool_host_t *h = find_host(w, host, port, 1);
  if (h->n > 0) {
    struct evhttp_connection *c = h->idle[--h->n];
    /* evhttp may have reconnected it on a new socket */
    upstream_set_nodelay(c);
    return c;
  }
  struct evhttp_connection *c = evhttp_connection_base_new(w->base, NULL, host, port);
  if (c == NULL) abort();
  evhttp_connection_set_retries(c, 0);
  evhttp_connection_set_timeout(c, g_cfg.upstream_timeout_s);
  return c;
}

void upstream_pool_put(worker_t *w, struct evhttp_connection *conn, int ok) {
  (void)ok;
  char *host = NULL;
  ev_uint16_t port = 0;
  evhttp_connection_get_peer(conn, &host, &port);
  pool_host_t *h = find_host(w, host ? host : "", port, 1);
  if (h->n == h->cap) {
    if (h->cap >= kMaxIdlePerHost) {
      /* over the cap: let evhttp free it once its last request is done */
      evhttp_connection_free_on_completion(conn);
      return;
    }
    size_t cap = h->cap ? h->cap * 2 : 8;
    struct evhttp_connection **idle = realloc(h->idle, cap * sizeof(*idle));
    if (idle == NULL) abort();
    h->idle = idle;
    h->cap = cap;
  }
  h->idle[h->n++] = conn;
}
