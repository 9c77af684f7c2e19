/* One downstream request: the host's stand-in for Envoy's ActiveStream and
 * FilterManager with a two-filter chain [golang filter] -> [router], the
 * HTTP/1 codec on each side being libevent's evhttp. */
#ifndef ENVOYHOST_STREAM_H
#define ENVOYHOST_STREAM_H

#include <stdint.h>

#include "buffer.h"
#include "filter.h"
#include "headermap.h"
#include "metadata.h"
#include "worker.h"

struct evhttp_request;
struct evhttp_connection;

typedef struct fm_dir {
  int headers_continued; /* headers passed beyond the golang filter */
  int complete;          /* the golang filter has seen end of stream */
  int trailers_stopped;  /* trailers seen by the filter but not passed on */
  buf_t buffered;        /* FilterManager-buffered data (AddData) */
  int has_buffered;
} fm_dir_t;

typedef struct stream {
  int refs;
  worker_t *w;
  hfilter_t *filter;
  uint64_t start_ns;
  /* downstream */
  struct evhttp_request *down;
  struct evhttp_connection *down_conn;
  char down_peer[64];
  int http_minor;
  hmap_t req_headers, resp_headers;
  hmap_t *req_trailers, *resp_trailers;
  const char *body; /* request body held by evhttp's input buffer */
  size_t body_len, body_off;
  int read_disabled;
  int feeding;
  fm_dir_t fm[2];
  int decode_aborted;       /* a local reply ended decoding */
  int resp_started;         /* response headers entered the encoder chain */
  int down_headers_sent, down_done, finishing;
  int resp_code;
  char details[64];
  /* stream info written by Go */
  metadata_t md;
  metadata_t filter_state;
  char override_host[64];
  int route_cache_clears;
  int drain_on_completion;
  /* router / upstream */
  int routed;
  char dest[128];
  buf_t up_body;
  int up_sent, up_done, up_headers_seen, up_end_sent;
  uint64_t up_cl, up_received;
  int up_cl_known;
  struct evhttp_request *up;
  struct evhttp_connection *up_conn;
  int attempt_count;
  int in_up_cb, cancel_pending;
} stream_t;

/* FilterManager operations the golang filter calls (decoder/encoder callbacks). */
void fm_continue(stream_t *st, int dir);
void fm_inject_data(stream_t *st, int dir, buf_t *data, int end_stream);
void fm_add_data(stream_t *st, int dir, buf_t *data, int streaming);
void fm_send_local_reply(stream_t *st, int code, const char *body, size_t body_len, const hmap_t *headers,
                         const char *details);
uint32_t fm_buffer_limit(stream_t *st);
void fm_watermark(stream_t *st, int dir, int above);

/* Upstream response entering the encoder chain. */
void fm_encode_headers(stream_t *st, int end_stream);
void fm_encode_data(stream_t *st, buf_t *data, int end_stream);

/* evhttp server callback for every downstream request. */
void stream_on_request(struct evhttp_request *req, void *arg);
void stream_unref(stream_t *st);
/* Resets the stream (Envoy: resetStream), e.g. upstream failure mid-body. */
void stream_reset(stream_t *st, const char *why);

/* router.c */
void router_headers(stream_t *st, int end_stream);
void router_data(stream_t *st, buf_t *data, int end_stream);
void router_trailers(stream_t *st);
void router_cancel(stream_t *st);

#endif
