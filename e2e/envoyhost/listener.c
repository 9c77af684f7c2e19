#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "host.h"
#include "log.h"
#include "registry.h"
#include "stats.h"

/* --drain-time-s (default 600 s, docs/root/operations/cli.rst) */
long g_drain_time_ms = 600 * 1000;

chain_t *listener_chain(listener_t *l) { return registry_listener_chain(l); }

static int split_addr(const char *addr, char *host, size_t hostlen, unsigned *port) {
  const char *colon = strrchr(addr, ':');
  if (colon == NULL) return -1;
  const char *h = addr;
  size_t hl = (size_t)(colon - addr);
  if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  }
  if (hl >= hostlen) return -1;
  memcpy(host, h, hl);
  host[hl] = 0;
  *port = (unsigned)atoi(colon + 1);
  return 0;
}

listener_t *listener_bind(const char *name, const char *addr, char *err, size_t errlen) {
  char host[64];
  unsigned port;
  if (split_addr(addr, host, sizeof(host), &port) != 0) {
    snprintf(err, errlen, "listener %s: address %s is not ip:port", name, addr);
    return NULL;
  }
  const char *pinned = NULL;
  for (size_t i = 0; i < g_cfg.npins; i++)
    if (strcmp(g_cfg.pin_names[i], name) == 0) pinned = g_cfg.pin_addrs[i];
  if (pinned != NULL) {
    if (split_addr(pinned, host, sizeof(host), &port) != 0) {
      snprintf(err, errlen, "--listener-address %s=%s is not ip:port", name, pinned);
      return NULL;
    }
  } else if (g_cfg.bind_listeners != NULL) {
    /* test harness: every listener on this IP with a free port */
    snprintf(host, sizeof(host), "%s", g_cfg.bind_listeners);
    port = 0;
  }
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t sl;
  int family;
  if (strchr(host, ':')) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) goto bad;
    sl = sizeof(*s6);
    family = AF_INET6;
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) goto bad;
    sl = sizeof(*s4);
    family = AF_INET;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1, zero = 0;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd >= 0 && family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 1024) != 0) {
    /* Envoy refuses the listener: the LDS update is NACKed */
    snprintf(err, errlen, "cannot bind listener %s to %s:%u: %s", name, host, port, strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
  }
  listener_t *l = calloc(1, sizeof(*l));
  if (l == NULL) abort();
  l->name = strdup(name);
  snprintf(l->want, sizeof(l->want), "%s", addr);
  l->fd = fd;
  sl = sizeof(ss);
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  char ip[INET6_ADDRSTRLEN];
  if (family == AF_INET) {
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
    snprintf(l->bound, sizeof(l->bound), "%s:%u", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
  } else {
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
    snprintf(l->bound, sizeof(l->bound), "[%s]:%u", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
  }
  l->evl = calloc(g_cfg.concurrency, sizeof(struct evconnlistener *));
  l->accept_tasks = calloc(g_cfg.concurrency, sizeof(void *));
  if (l->evl == NULL || l->accept_tasks == NULL) abort();
  l->cx_total = stat_counter("listener.%s.downstream_cx_total", name);
  l->cx_active = stat_gauge("listener.%s.downstream_cx_active", name);
  l->cx_drained = stat_counter("listener.%s.downstream_cx_drained", name);
  l->cx_destroy_drain = stat_counter("listener.%s.downstream_cx_drain_closed", name);
  hlog(LOG_INFO, "listener %s on %s", name, l->bound);
  printf("LISTEN %s %s\n", name, l->bound);
  fflush(stdout);
  return l;
bad:
  snprintf(err, errlen, "listener %s: address %s is not an IP", name, addr);
  return NULL;
}

typedef struct ltask {
  listener_t *l;
  chain_t *chain;
  worker_t *w;
  struct event *timer;
} ltask_t;

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg) {
  (void)evl, (void)sa, (void)len;
  ltask_t *t = arg;
  conn_accept(t->w, t->l, fd);
}

static void start_task(void *arg) {
  ltask_t *t = arg;
  /* every worker accepts on the same socket, as Envoy workers share a listener */
  struct evconnlistener *evl = evconnlistener_new(t->w->base, on_accept, t, LEV_OPT_CLOSE_ON_EXEC, -1, t->l->fd);
  if (evl == NULL) hlog(LOG_ERROR, "listener %s: cannot accept on worker %u", t->l->name, t->w->id);
  t->l->evl[t->w->id] = evl;
  t->l->accept_tasks[t->w->id] = t;
}

void listener_start(listener_t *l) {
  for (uint32_t i = 0; i < g_cfg.concurrency; i++) {
    ltask_t *t = calloc(1, sizeof(*t));
    if (t == NULL) abort();
    t->l = l;
    t->w = &g_workers[i];
    worker_post(t->w, start_task, t);
  }
}

static void stop_task(void *arg) {
  ltask_t *t = arg;
  listener_t *l = t->l;
  if (l->evl[t->w->id]) {
    evconnlistener_free(l->evl[t->w->id]);
    l->evl[t->w->id] = NULL;
  }
  free(l->accept_tasks[t->w->id]);
  l->accept_tasks[t->w->id] = NULL;
  if (atomic_fetch_sub(&l->stopping_workers, 1) == 1) {
    close(l->fd);
    l->fd = -1;
  }
  free(t);
}

void listener_stop(listener_t *l) {
  hlog(LOG_INFO, "listener %s on %s: stopped", l->name, l->bound);
  atomic_store(&l->stopping_workers, (int)g_cfg.concurrency);
  for (uint32_t i = 0; i < g_cfg.concurrency; i++) {
    ltask_t *t = calloc(1, sizeof(*t));
    if (t == NULL) abort();
    t->l = l;
    t->w = &g_workers[i];
    worker_post(t->w, stop_task, t);
  }
}

/* ---- drains ---- */

static void close_task(evutil_socket_t fd, short what, void *arg);

static void drain_task(void *arg) {
  ltask_t *t = arg;
  int n = 0;
  for (dconn_t *c = t->w->conns, *next; c != NULL; c = next) {
    next = c->next;
    if (c->chain != t->chain) continue;
    n++;
    conn_drain(c);
  }
  if (n > 0 && g_drain_time_ms > 0) {
    /* what is still open when the drain time ends is closed */
    t->timer = evtimer_new(t->w->base, close_task, t);
    struct timeval tv = {g_drain_time_ms / 1000, (g_drain_time_ms % 1000) * 1000};
    event_add(t->timer, &tv);
    return;
  }
  chain_unref(t->chain);
  free(t);
}

static void close_task(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  ltask_t *t = arg;
  for (dconn_t *c = t->w->conns, *next; c != NULL; c = next) {
    next = c->next;
    if (c->chain != t->chain) continue;
    atomic_fetch_add(c->lis->cx_destroy_drain, 1);
    conn_close(c);
  }
  event_free(t->timer);
  chain_unref(t->chain);
  free(t);
}

void listener_drain_chain(chain_t *old) {
  hlog(LOG_INFO, "listener %s: draining the connections of a replaced filter chain", old->listener);
  for (uint32_t i = 0; i < g_cfg.concurrency; i++) {
    ltask_t *t = calloc(1, sizeof(*t));
    if (t == NULL) abort();
    t->chain = old;
    chain_ref(old);
    t->w = &g_workers[i];
    worker_post(t->w, drain_task, t);
  }
}
