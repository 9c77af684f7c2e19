#include "conn.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "stream.h"

/* Bytes of a pipelined next request read while one is in flight; beyond
 * this the socket is not read until the response is done. */
enum { kReadAheadLimit = 64 * 1024 };

static const h1_callbacks_t kCallbacks;

static void unref(dconn_t *c) {
  if (--c->refs > 0) return;
  h1p_free(&c->p);
  obuf_free(&c->pending);
  if (c->hdr_timer) event_free(c->hdr_timer);
  if (c->resume_ev) event_free(c->resume_ev);
  chain_unref(c->chain);
  free(c);
}

static void unlink_conn(dconn_t *c) {
  if (c->prev) c->prev->next = c->next;
  else if (c->w->conns == c) c->w->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

void conn_close(dconn_t *c) {
  if (c->closed) return;
  c->closed = 1;
  unlink_conn(c);
  atomic_fetch_sub(c->lis->cx_active, 1);
  if (c->bev) {
    bufferevent_free(c->bev); /* BEV_OPT_CLOSE_ON_FREE closes the socket */
    c->bev = NULL;
  }
  if (c->hdr_timer) event_del(c->hdr_timer);
  struct stream *st = c->st;
  if (st != NULL) {
    /* the connection went away under a stream: Envoy resets it
     * (ConnectionManagerImpl::onEvent RemoteClose -> resetAllStreams) */
    c->st = NULL;
    stream_downstream_reset(st);
    unref(c); /* the stream's reference */
  }
  unref(c);
}

static void flush_then_close(dconn_t *c) {
  if (c->closed || c->bev == NULL) return;
  if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
    conn_close(c);
    return;
  }
  c->close_after = 2; /* the write callback closes once the output is empty */
  bufferevent_disable(c->bev, EV_READ);
}

/* ---- reading ---- */

static void deliver_pending(dconn_t *c, int end) {
  if (c->st == NULL) {
    obuf_drain(&c->pending, c->pending.len);
    return;
  }
  obuf_t b;
  obuf_init(&b);
  obuf_move(&b, &c->pending);
  stream_decode_data(c->st, &b, end);
  obuf_free(&b);
}

static int on_head(void *arg, h1_head_t *h) {
  dconn_t *c = arg;
  if (c->hdr_timer) event_del(c->hdr_timer);
  /* a request without a body ends with its headers (end_stream on decodeHeaders) */
  int end = c->p.state == H1S_DONE;
  c->req_complete = end;
  c->end_delivered = end;
  c->resp_done = 0;
  c->refs++; /* the stream's; stream_new sets c->st before it runs anything */
  stream_new(c, h, end);
  return c->paused ? 1 : 0;
}

static int on_data(void *arg, const char *p, size_t n) {
  dconn_t *c = arg;
  /* HTTP/1 codec: body bytes of one read go to the stream together
   * (ConnectionImpl::dispatchBufferedBody) */
  obuf_add(&c->pending, p, n); /* bufferBody: buffered_body_.add (http1/codec_impl.cc:756-763) */
  return 0;
}

static int on_trailers(void *arg, hmap_t *t) {
  dconn_t *c = arg;
  if (c->st == NULL || !c->chain->enable_trailers) return 0; /* HTTP/1 trailers are dropped unless enabled */
  if (c->pending.len > 0) deliver_pending(c, 0);
  c->req_complete = 1;
  c->end_delivered = 1;
  if (c->st) stream_decode_trailers(c->st, t);
  return 0;
}

static int on_complete(void *arg) {
  dconn_t *c = arg;
  c->req_complete = 1;
  if (!c->end_delivered) {
    c->end_delivered = 1;
    deliver_pending(c, 1);
  }
  return 1; /* one request at a time */
}

static const h1_callbacks_t kCallbacks = {on_head, on_data, on_trailers, on_complete};

static void start_header_timer(dconn_t *c) {
  if (c->chain->request_headers_timeout_ms <= 0 || c->hdr_timer == NULL) return;
  if (event_pending(c->hdr_timer, EV_TIMEOUT, NULL)) return;
  struct timeval tv = {c->chain->request_headers_timeout_ms / 1000, (c->chain->request_headers_timeout_ms % 1000) * 1000};
  event_add(c->hdr_timer, &tv);
}

static void dispatch(dconn_t *c) {
  if (c->closed || c->paused) return;
  struct evbuffer *in = bufferevent_get_input(c->bev);
  /* the next request waits until this one's response is done */
  if (c->st != NULL && c->req_complete) return;
  if (c->p.state == H1S_DONE) return;
  if (c->st == NULL && evbuffer_get_length(in) > 0) start_header_timer(c);
  c->refs++;
  int rc = h1p_execute(&c->p, in, &kCallbacks, c);
  if (!c->closed && c->pending.len > 0 && !c->req_complete) deliver_pending(c, 0);
  if (rc < 0 && !c->closed) {
    if (c->p.state == H1S_ERROR) {
      atomic_fetch_add(c->chain->cx_protocol_error, 1);
      c->close_after = 1;
      if (c->st != NULL) stream_protocol_error(c->st, c->p.err_status, c->p.err_details);
      else {
        c->refs++;
        stream_protocol_error_new(c, c->p.err_status, c->p.err_details);
      }
    }
  }
  unref(c);
}

static void read_cb(struct bufferevent *bev, void *arg) {
  (void)bev;
  dispatch(arg);
}

static void write_cb(struct bufferevent *bev, void *arg) {
  dconn_t *c = arg;
  if (c->close_after == 2 && evbuffer_get_length(bufferevent_get_output(bev)) == 0) conn_close(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  dconn_t *c = arg;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
    if (c->st == NULL && !c->p.head_bytes && c->p.state == H1S_HEAD) {
      conn_close(c);
      return;
    }
    conn_close(c);
  }
}

static void header_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  dconn_t *c = arg;
  if (c->st != NULL || c->closed) return;
  /* ActiveStream::onRequestHeaderTimeout: 408, connection closed */
  atomic_fetch_add(c->chain->rq_timeout, 1);
  c->close_after = 1;
  c->refs++;
  stream_protocol_error_new(c, 408, "request_header_timeout");
}

static void resume(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  dispatch(arg);
}

void conn_accept(worker_t *w, listener_t *l, int fd) {
  chain_t *chain = listener_chain(l);
  if (chain == NULL) {
    close(fd);
    return;
  }
  dconn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) abort();
  c->w = w;
  c->lis = l;
  c->chain = chain;
  c->refs = 1;
  h1p_init(&c->p, H1_REQUEST);
  c->p.max_header_bytes = chain->max_header_bytes;
  c->p.max_headers = chain->max_headers;
  c->p.underscores = chain->headers_with_underscores;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
    snprintf(c->peer, sizeof(c->peer), "%s:%u", ip, ntohs(s4->sin_port));
  }
  snprintf(c->local, sizeof(c->local), "%s", l->bound);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* as Envoy sets on every connection */
  c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (c->bev == NULL) abort();
  bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
  bufferevent_setwatermark(c->bev, EV_READ, 0, kReadAheadLimit + chain->max_header_bytes);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  c->hdr_timer = evtimer_new(w->base, header_timeout, c);
  c->resume_ev = event_new(w->base, -1, 0, resume, c);
  c->next = w->conns;
  if (w->conns) w->conns->prev = c;
  w->conns = c;
  atomic_fetch_add(l->cx_total, 1);
  atomic_fetch_add(l->cx_active, 1);
}

/* ---- writing (the HTTP/1 response encoder) ---- */

static const char *reason(int code) {
  switch (code) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Payload Too Large";
  case 415: return "Unsupported Media Type";
  case 422: return "Unprocessable Entity";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  }
  return "";
}

void conn_send_100_continue(dconn_t *c) {
  if (c->closed) return;
  evbuffer_add_printf(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n");
}

static void response_complete(dconn_t *c) {
  c->resp_done = 1;
  if (c->st != NULL) {
    stream_detach(c->st);
    c->st = NULL;
    unref(c);
  }
  if (c->closed) return;
  if (c->close_after || !c->req_complete) {
    flush_then_close(c);
    return;
  }
  /* ready for the next request on this connection */
  h1p_reset(&c->p);
  c->req_complete = 0;
  c->end_delivered = 0;
  event_active(c->resume_ev, 0, 0);
}

static int is_hop_by_hop(const char *k) {
  return strcmp(k, "connection") == 0 || strcmp(k, "keep-alive") == 0 || strcmp(k, "proxy-connection") == 0 ||
         strcmp(k, "transfer-encoding") == 0 || strcmp(k, "upgrade") == 0;
}

void conn_encode_headers(dconn_t *c, hmap_t *h, int end_stream) {
  if (c->closed) return;
  struct evbuffer *out = bufferevent_get_output(c->bev);
  const char *st = hmap_get_str(h, ":status");
  int code = st ? atoi(st) : 500;
  if (c->draining && !c->drain_closed) {
    /* ActiveStream::encodeHeaders: drainClose() -> downstream_cx_drain_close
     * (http/conn_manager_impl.cc:1956-1968) */
    c->drain_closed = 1;
    atomic_fetch_add(c->chain->cx_drain_close, 1);
  }
  if (c->draining || !c->req_complete || c->close_after) {
    /* encodeHeaders: a draining HTTP/1 connection, a response before the
     * request is complete (conn_manager_impl.cc:1995-2004, 2015-2024) or a close asked
     * for says connection: close */
    c->close_after = 1;
  }
  evbuffer_add_printf(out, "HTTP/1.%d %d %s\r\n", c->p.head.minor == 0 ? 0 : 1, code, reason(code));
  int has_cl = 0;
  for (size_t i = 0; i < h->n; i++) {
    const hentry_t *e = &h->e[i];
    if (e->key[0] == ':' || is_hop_by_hop(e->key)) continue;
    if (strcmp(e->key, "content-length") == 0) has_cl = 1;
    evbuffer_add(out, e->key, e->klen);
    evbuffer_add(out, ": ", 2);
    evbuffer_add(out, e->value, e->vlen);
    evbuffer_add(out, "\r\n", 2);
  }
  c->out_head = strcmp(c->p.head.method, "HEAD") == 0;
  c->out_no_body = c->out_head || code == 204 || code == 304 || (code >= 100 && code < 200);
  c->out_chunked = 0;
  if (!c->out_no_body && !has_cl) {
    if (end_stream) {
      evbuffer_add_printf(out, "content-length: 0\r\n");
    } else if (c->p.head.minor == 1) {
      c->out_chunked = 1;
      evbuffer_add_printf(out, "transfer-encoding: chunked\r\n");
    } else {
      c->close_after = 1; /* HTTP/1.0: the close delimits the body */
    }
  }
  if (c->close_after) evbuffer_add_printf(out, "connection: close\r\n");
  else if (c->p.head.minor == 0) evbuffer_add_printf(out, "connection: keep-alive\r\n");
  evbuffer_add(out, "\r\n", 2);
  if (end_stream) response_complete(c);
}

void conn_encode_data(dconn_t *c, const obuf_t *data, int end_stream) {
  if (c->closed) return;
  struct evbuffer *out = bufferevent_get_output(c->bev);
  size_t n = data->len;
  if (n > 0 && !c->out_no_body) {
    if (c->out_chunked) evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_add_obuf(out, data);
    if (c->out_chunked) evbuffer_add(out, "\r\n", 2);
  }
  if (end_stream) {
    if (c->out_chunked) evbuffer_add(out, "0\r\n\r\n", 5);
    response_complete(c);
  }
}

void conn_encode_trailers(dconn_t *c, const hmap_t *t) {
  if (c->closed) return;
  struct evbuffer *out = bufferevent_get_output(c->bev);
  if (c->out_chunked) {
    evbuffer_add(out, "0\r\n", 3);
    /* HTTP/1 response trailers go out only with enable_trailers */
    for (size_t i = 0; c->chain->enable_trailers && i < t->n; i++) {
      evbuffer_add(out, t->e[i].key, t->e[i].klen);
      evbuffer_add(out, ": ", 2);
      evbuffer_add(out, t->e[i].value, t->e[i].vlen);
      evbuffer_add(out, "\r\n", 2);
    }
    evbuffer_add(out, "\r\n", 2);
  }
  response_complete(c);
}

void conn_stream_reset(dconn_t *c) {
  /* resetting an HTTP/1 stream closes its connection */
  if (c->st != NULL) {
    stream_detach(c->st);
    c->st = NULL;
    unref(c);
  }
  conn_close(c);
}

void conn_read_disable(dconn_t *c, int disable) {
  if (c->closed) return;
  c->paused = disable;
  if (disable) {
    bufferevent_disable(c->bev, EV_READ);
  } else {
    bufferevent_enable(c->bev, EV_READ);
    event_active(c->resume_ev, 0, 0);
  }
}

void conn_drain(dconn_t *c) {
  if (c->closed) return;
  if (!c->drain_counted) {
    c->drain_counted = 1;
    atomic_fetch_add(c->lis->cx_drained, 1);
  }
  /* HTTP/1 has no GOAWAY: the next response says connection: close
   * (drainClose() under --drain-strategy immediate; Envoy's default
   * "gradual" does it with a probability that grows over the drain time,
   * conn_manager_impl.cc:1958-1968); an idle connection stays until then
   * or until the drain time ends */
  c->draining = 1;
}
