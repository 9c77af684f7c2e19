#include "upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "h1parse.h"
#include "log.h"

enum { kMaxIdlePerHost = 256 };

struct upconn {
  worker_t *w;
  cluster_t *cluster; /* ref while a request runs */
  host_t *host;
  cstats_t *st;
  struct bufferevent *bev;
  h1p_t p;
  int connected, in_use, req_done, headers_seen, chunked_out, keep_alive;
  char local[64]; /* the connection's local ip:port, once connected */
  int dispatching, cancelled, ended, trailers_seen;
  int bytes_seen; /* a response byte arrived for the current request */
  cluster_t *pool_cluster; /* the cluster version whose pool holds it (ref) */
  struct event *connect_timer;
  const upreq_cb_t *cb;
  void *arg;
  struct upconn *next_idle;
};

/* idle connections of a worker, by host */
typedef struct idle_list {
  host_t *host;
  upconn_t *head;
  size_t n;
  struct idle_list *next;
} idle_list_t;

typedef struct upstream_pool {
  idle_list_t *lists;
} upstream_pool_t;

static idle_list_t *idle_for(worker_t *w, host_t *h) {
  if (w->pool == NULL) {
    w->pool = calloc(1, sizeof(upstream_pool_t));
    if (w->pool == NULL) abort();
  }
  for (idle_list_t *l = w->pool->lists; l != NULL; l = l->next)
    if (l->host == h) return l;
  idle_list_t *l = calloc(1, sizeof(*l));
  if (l == NULL) abort();
  l->host = h;
  l->next = w->pool->lists;
  w->pool->lists = l;
  return l;
}

static void remove_idle(upconn_t *u) {
  idle_list_t *l = idle_for(u->w, u->host);
  for (upconn_t **p = &l->head; *p != NULL; p = &(*p)->next_idle)
    if (*p == u) {
      *p = u->next_idle;
      l->n--;
      return;
    }
}

static void up_free(upconn_t *u) {
  cluster_unref(u->pool_cluster);
  if (u->bev) {
    bufferevent_free(u->bev);
    atomic_fetch_sub(u->st->cx_active, 1);
  }
  if (u->connect_timer) event_free(u->connect_timer);
  h1p_free(&u->p);
  cluster_unref(u->cluster);
  free(u);
}

static void finish(upconn_t *u) {
  /* back to the pool if the exchange was clean and both sides keep it alive */
  cluster_unref(u->cluster);
  u->cluster = NULL;
  u->in_use = 0;
  u->cb = NULL;
  idle_list_t *l = idle_for(u->w, u->host);
  if (!u->keep_alive || !u->req_done || l->n >= kMaxIdlePerHost) {
    up_free(u);
    return;
  }
  h1p_reset(&u->p);
  u->req_done = u->headers_seen = u->ended = u->trailers_seen = u->bytes_seen = 0;
  u->next_idle = l->head;
  l->head = u;
  l->n++;
}

/* After the callbacks of one read: dispose of what they ended. The parser
 * lives inside u, so nothing is freed while it runs. */
static void settle(upconn_t *u) {
  if (u->cancelled) up_free(u);
  else if (u->ended) finish(u);
}

static void fail(upconn_t *u, int reason) {
  const upreq_cb_t *cb = u->cb;
  void *arg = u->arg;
  int after = u->headers_seen;
  u->cb = NULL;
  u->keep_alive = 0;
  if (!u->in_use) {
    remove_idle(u);
    up_free(u);
    return;
  }
  u->dispatching = 1;
  if (cb) cb->on_reset(arg, reason, after);
  u->dispatching = 0;
  up_free(u);
}

/* ---- response parsing ---- */

static int on_head(void *arg, h1_head_t *h) {
  upconn_t *u = arg;
  if (h->status >= 100 && h->status < 200) {
    /* 1xx: the HCM answered the client's Expect itself; the real
     * response follows */
    h1p_reset(&u->p);
    return 0;
  }
  u->headers_seen = 1;
  u->keep_alive = h->keep_alive;
  int end = u->p.state == H1S_DONE;
  hmap_t resp;
  hmap_init(&resp);
  char tmp[8];
  int n = snprintf(tmp, sizeof(tmp), "%d", h->status);
  hmap_add(&resp, ":status", 7, tmp, (size_t)n);
  for (size_t i = 0; i < h->headers.n; i++) {
    const hentry_t *e = &h->headers.e[i];
    if (strcmp(e->key, "connection") == 0 || strcmp(e->key, "keep-alive") == 0 ||
        strcmp(e->key, "transfer-encoding") == 0 || strcmp(e->key, "proxy-connection") == 0)
      continue;
    hmap_add(&resp, e->key, e->klen, e->value, e->vlen);
  }
  if (end) u->ended = 1;
  if (u->cb) u->cb->on_headers(u->arg, h->status, &resp, end);
  hmap_free(&resp);
  return u->cancelled || end ? 1 : 0;
}

static int on_data(void *arg, const char *p, size_t n) {
  upconn_t *u = arg;
  if (u->cb) u->cb->on_data(u->arg, p, n, 0);
  return u->cancelled ? 1 : 0;
}

static int on_trailers(void *arg, hmap_t *t) {
  upconn_t *u = arg;
  u->trailers_seen = 1;
  u->ended = 1;
  if (u->cb) u->cb->on_trailers(u->arg, t);
  return u->cancelled ? 1 : 0;
}

static int on_complete(void *arg) {
  upconn_t *u = arg;
  if (!u->trailers_seen) {
    u->ended = 1;
    if (u->cb) u->cb->on_data(u->arg, "", 0, 1);
  }
  return 1;
}

static const h1_callbacks_t kCallbacks = {on_head, on_data, on_trailers, on_complete};

static void read_cb(struct bufferevent *bev, void *arg) {
  upconn_t *u = arg;
  if (!u->in_use) {
    /* bytes on an idle connection: not something to reuse */
    remove_idle(u);
    up_free(u);
    return;
  }
  u->bytes_seen = 1;
  u->dispatching = 1;
  int rc = h1p_execute(&u->p, bufferevent_get_input(bev), &kCallbacks, u);
  u->dispatching = 0;
  if (rc < 0 && u->p.state == H1S_ERROR && !u->cancelled && !u->ended) {
    fail(u, UP_PROTOCOL_ERROR);
    return;
  }
  settle(u);
}

static void event_cb(struct bufferevent *bev, short what, void *arg) {
  upconn_t *u = arg;
  if (what & BEV_EVENT_CONNECTED) {
    u->connected = 1;
    event_del(u->connect_timer);
    int one = 1;
    setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char ip[INET6_ADDRSTRLEN];
    if (getsockname(bufferevent_getfd(bev), (struct sockaddr *)&ss, &sl) == 0) {
      if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(u->local, sizeof(u->local), "%s:%u", ip, ntohs(a->sin_port));
      } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(u->local, sizeof(u->local), "[%s]:%u", ip, ntohs(a->sin6_port));
      }
    }
    return;
  }
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
    if (!u->connected && u->in_use) {
      atomic_fetch_add(u->st->cx_connect_fail, 1);
      fail(u, UP_CONNECT_FAILURE);
      return;
    }
    if (u->in_use && u->p.state == H1S_BODY_EOF) {
      /* a close-delimited body ends here */
      u->keep_alive = 0;
      u->dispatching = 1;
      h1p_eof(&u->p, &kCallbacks, u);
      u->dispatching = 0;
      settle(u);
      return;
    }
    /* CodecClient::onEvent: on a close, HTTP/1 first dispatches an empty
     * buffer, which BalsaParser answers HPE_INVALID_EOF_STATE once a
     * response byte was read and the message is not done
     * (http1/balsa_parser.cc:223-234); that codec error marks the
     * connection's protocol_error_, and the streams are reset with
     * ProtocolError, else ConnectionTermination (codec_client.cc:113-145,
     * 187-203) */
    fail(u, u->bytes_seen ? UP_PROTOCOL_ERROR : UP_CONNECTION_TERMINATION);
  }
}

static void connect_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  upconn_t *u = arg;
  atomic_fetch_add(u->st->cx_connect_timeout, 1);
  atomic_fetch_add(u->st->cx_connect_fail, 1);
  fail(u, UP_CONNECT_TIMEOUT);
}

static void take(upconn_t *u, cluster_t *c, const upreq_cb_t *cb, void *arg) {
  u->in_use = 1;
  cluster_ref(c);
  u->cluster = c;
  u->cb = cb;
  u->arg = arg;
}

upconn_t *up_start(worker_t *w, cluster_t *c, host_t *h, const upreq_cb_t *cb, void *arg) {
  idle_list_t *l = idle_for(w, h);
  /* a connection pool belongs to one cluster version: an updated cluster
   * (new TLS settings, say) starts with new connections, as Envoy's does */
  while (l->head != NULL && l->head->pool_cluster != c) {
    upconn_t *old = l->head;
    l->head = old->next_idle;
    l->n--;
    up_free(old);
  }
  upconn_t *u = l->head;
  if (u != NULL) {
    l->head = u->next_idle;
    l->n--;
    take(u, c, cb, arg);
    return u;
  }
  if (atomic_load(c->st->cx_active) >= c->max_connections) return NULL;
  u = calloc(1, sizeof(*u));
  if (u == NULL) abort();
  u->w = w;
  u->host = h;
  u->st = c->st;
  h1p_init(&u->p, H1_RESPONSE);
  if (c->tls) {
    /* BEV_EVENT_CONNECTED comes after the handshake; a failed one is a
     * connection failure, as Envoy's TLS transport socket reports it */
    u->bev = bufferevent_openssl_socket_new(w->base, -1, cluster_new_ssl(c), BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (u->bev) bufferevent_openssl_set_allow_dirty_shutdown(u->bev, 1);
  } else {
    u->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
  }
  if (u->bev == NULL) abort();
  atomic_fetch_add(c->st->cx_total, 1);
  atomic_fetch_add(c->st->cx_active, 1);
  bufferevent_setcb(u->bev, read_cb, NULL, event_cb, u);
  bufferevent_enable(u->bev, EV_READ | EV_WRITE);
  u->connect_timer = evtimer_new(w->base, connect_timeout, u);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t sl;
  if (strchr(h->ip, ':')) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(h->port);
    inet_pton(AF_INET6, h->ip, &s6->sin6_addr);
    sl = sizeof(*s6);
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(h->port);
    inet_pton(AF_INET, h->ip, &s4->sin_addr);
    sl = sizeof(*s4);
  }
  take(u, c, cb, arg);
  cluster_ref(c);
  u->pool_cluster = c;
  if (c->connect_timeout_ms > 0) {
    struct timeval tv = {c->connect_timeout_ms / 1000, (c->connect_timeout_ms % 1000) * 1000};
    event_add(u->connect_timer, &tv);
  }
  /* a refused connect is reported through event_cb, like any other */
  bufferevent_socket_connect(u->bev, (struct sockaddr *)&ss, (int)sl);
  return u;
}

void up_send_headers(upconn_t *u, const hmap_t *h, int end_stream, int head_request) {
  struct evbuffer *out = bufferevent_get_output(u->bev);
  const char *method = hmap_get_str(h, ":method");
  const char *path = hmap_get_str(h, ":path");
  const char *authority = hmap_get_str(h, ":authority");
  u->p.response_to_head = head_request;
  evbuffer_add_printf(out, "%s %s HTTP/1.1\r\n", method ? method : "GET", path ? path : "/");
  evbuffer_add_printf(out, "host: %s\r\n", authority && authority[0] ? authority : u->host->addr);
  int has_cl = 0;
  for (size_t i = 0; i < h->n; i++) {
    const hentry_t *e = &h->e[i];
    if (e->key[0] == ':' || strcmp(e->key, "connection") == 0 || strcmp(e->key, "transfer-encoding") == 0)
      continue;
    if (strcmp(e->key, "content-length") == 0) has_cl = 1;
    evbuffer_add(out, e->key, e->klen);
    evbuffer_add(out, ": ", 2);
    evbuffer_add(out, e->value, e->vlen);
    evbuffer_add(out, "\r\n", 2);
  }
  u->chunked_out = 0;
  if (!has_cl) {
    if (!end_stream) {
      u->chunked_out = 1;
      evbuffer_add_printf(out, "transfer-encoding: chunked\r\n");
    } else if (method && (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0)) {
      evbuffer_add_printf(out, "content-length: 0\r\n");
    }
  }
  evbuffer_add(out, "\r\n", 2);
  if (end_stream) u->req_done = 1;
}

void up_send_data(upconn_t *u, const obuf_t *data, int end_stream) {
  struct evbuffer *out = bufferevent_get_output(u->bev);
  size_t n = data->len;
  if (n > 0) {
    if (u->chunked_out) evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_add_obuf(out, data);
    if (u->chunked_out) evbuffer_add(out, "\r\n", 2);
  }
  if (end_stream) {
    if (u->chunked_out) evbuffer_add(out, "0\r\n\r\n", 5);
    u->req_done = 1;
  }
}

void up_send_trailers(upconn_t *u, const hmap_t *t) {
  struct evbuffer *out = bufferevent_get_output(u->bev);
  if (u->chunked_out) {
    evbuffer_add(out, "0\r\n", 3);
    for (size_t i = 0; i < t->n; i++) {
      evbuffer_add(out, t->e[i].key, t->e[i].klen);
      evbuffer_add(out, ": ", 2);
      evbuffer_add(out, t->e[i].value, t->e[i].vlen);
      evbuffer_add(out, "\r\n", 2);
    }
    evbuffer_add(out, "\r\n", 2);
  }
  /* with a content-length HTTP/1 cannot carry trailers: they are dropped */
  u->req_done = 1;
}

void up_cancel(upconn_t *u) {
  u->cb = NULL;
  u->cancelled = 1;
  u->keep_alive = 0;
  if (!u->dispatching) up_free(u);
}

const char *up_local_address(const upconn_t *u) { return u->local; }
