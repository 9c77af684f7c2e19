/* Admin listener: /stats (host counters + metrics the filter defined through
 * the config callbacks) and /ready, on its own thread like Envoy's admin. */
#include "admin.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <string.h>

#include "buffer.h"
#include "log.h"
#include "stats.h"

static struct event_base *admin_base;

static void on_admin(struct evhttp_request *req, void *arg) {
  (void)arg;
  const char *uri = evhttp_request_get_uri(req);
  struct evbuffer *out = evbuffer_new();
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
  if (strncmp(uri, "/stats", 6) == 0) {
    buf_t b;
    buf_init(&b);
    stats_render(&b);
    evbuffer_add(out, b.data, b.len);
    buf_free(&b);
    evhttp_send_reply(req, 200, "OK", out);
  } else if (strcmp(uri, "/ready") == 0) {
    evbuffer_add_printf(out, "LIVE\n");
    evhttp_send_reply(req, 200, "OK", out);
  } else {
    evbuffer_add_printf(out, "not found\n");
    evhttp_send_reply(req, 404, "Not Found", out);
  }
  evbuffer_free(out);
}

static void *admin_main(void *arg) {
  (void)arg;
  event_base_dispatch(admin_base);
  return NULL;
}

int admin_start(int fd) {
  admin_base = event_base_new();
  struct evhttp *http = admin_base ? evhttp_new(admin_base) : NULL;
  if (http == NULL || evhttp_accept_socket(http, fd) != 0) return -1;
  evhttp_set_gencb(http, on_admin, NULL);
  pthread_t t;
  return pthread_create(&t, NULL, admin_main, NULL);
}
