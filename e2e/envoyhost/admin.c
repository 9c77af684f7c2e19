/* Admin listener on its own thread, like Envoy's admin (and, here, its
 * main thread: config pushes are applied on it). */
#include "admin.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "host.h"
#include "log.h"
#include "registry.h"
#include "stats.h"

static struct event_base *admin_base;
static atomic_int configured;

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *data, size_t n) {
  struct evbuffer *out = evbuffer_new();
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
  evbuffer_add(out, data, n);
  evhttp_send_reply(req, code, reason, out);
  evbuffer_free(out);
}

static void push_config(struct evhttp_request *req) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t n = evbuffer_get_length(in);
  char *body = malloc(n + 1);
  if (body == NULL) abort();
  evbuffer_remove(in, body, n);
  body[n] = 0;
  char err[2048];
  atomic_fetch_add(&g_stats.config_pushes, 1);
  int rc = registry_apply(body, n, err, sizeof(err));
  free(body);
  if (rc != 0) {
    atomic_fetch_add(&g_stats.config_pushes_rejected, 1);
    hlog(LOG_WARN, "config refused: %s", err);
    reply_text(req, 400, "Bad Request", err, strlen(err));
    return;
  }
  atomic_store(&configured, 1);
  reply_text(req, 200, "OK", "ok\n", 3);
}

static void on_admin(struct evhttp_request *req, void *arg) {
  (void)arg;
  const char *uri = evhttp_request_get_uri(req);
  buf_t b;
  buf_init(&b);
  if (strcmp(uri, "/envoyhost/config") == 0 && evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
    push_config(req);
  } else if (strncmp(uri, "/stats", 6) == 0) {
    stats_render(&b);
    reply_text(req, 200, "OK", b.data ? b.data : "", b.len);
  } else if (strncmp(uri, "/listeners", 10) == 0) {
    registry_listeners(&b);
    reply_text(req, 200, "OK", b.data ? b.data : "", b.len);
  } else if (strcmp(uri, "/ready") == 0) {
    reply_text(req, 200, "OK", "LIVE\n", 5);
  } else {
    reply_text(req, 404, "Not Found", "not found\n", 10);
  }
  buf_free(&b);
}

static void *admin_main(void *arg) {
  (void)arg;
  event_base_dispatch(admin_base);
  return NULL;
}

int admin_start(const char *addr, char *bound, size_t boundlen) {
  char host[64];
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) return -1;
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = 0;
  admin_base = event_base_new();
  struct evhttp *http = admin_base ? evhttp_new(admin_base) : NULL;
  if (http == NULL) return -1;
  struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)atoi(colon + 1));
  if (s == NULL) return -1;
  evhttp_set_gencb(http, on_admin, NULL);
  evhttp_set_max_body_size(http, 256 * 1024 * 1024);
  evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &sl);
  unsigned port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  snprintf(bound, boundlen, "%s:%u", host, port);
  pthread_t t;
  return pthread_create(&t, NULL, admin_main, NULL);
}
