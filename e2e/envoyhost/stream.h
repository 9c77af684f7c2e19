/* One downstream request: the host's Envoy ActiveStream (HCM) and
 * FilterManager, with the filter chain [golang filter]? -> [router]. */
#ifndef ENVOYHOST_STREAM_H
#define ENVOYHOST_STREAM_H

#include <stdint.h>

#include "buffer.h"
#include "chain.h"
#include "cluster.h"
#include "fconfig.h"
#include "filter.h"
#include "h1parse.h"
#include "headermap.h"
#include "metadata.h"
#include "routecfg.h"
#include "worker.h"

struct dconn;
struct event;
struct router;

typedef struct fm_dir {
  int headers_continued; /* headers passed beyond the golang filter */
  int complete;          /* the golang filter has seen end of stream */
  int trailers_stopped;  /* trailers seen by the filter but not passed on */
  obuf_t buffered;       /* FilterManager-buffered data (AddData) */
  int has_buffered;
} fm_dir_t;

typedef struct stream {
  int refs;
  worker_t *w;
  struct dconn *conn; /* NULL once the response is done or the stream reset */
  chain_t *chain;
  fconfig_t *fc;       /* the golang filter's config for this stream */
  int missing_config;  /* ECDS config never arrived: MissingConfigFilter */
  int health_check;    /* the health_check filter answers this request */
  hfilter_t *filter;   /* the golang filter, if the chain has one */
  uint64_t start_ns, start_wall_ms, req_done_ns, resp_first_ns, end_ns;
  char peer[80], local[80];
  int minor, head_request;
  /* downstream */
  hmap_t req_headers, resp_headers;
  hmap_t *req_trailers, *resp_trailers;
  int remote_complete; /* the codec saw the request's last byte */
  int read_disabled;
  fm_dir_t fm[2];
  int decode_aborted;  /* a local reply ended decoding */
  int resp_started;    /* response headers entered the encoder chain */
  int down_headers_sent, down_done, finishing, reset;
  int resp_code;
  char details[160]; /* response code details; Envoy's longest here are ~110 */
  uint64_t flags;  /* response flags */
  buf_t local_body; /* %LOCAL_REPLY_BODY% */
  uint64_t bytes_received, bytes_sent;
  /* stream info written by Go */
  metadata_t md;
  metadata_t filter_state;
  char override_host[64];
  int override_strict;
  int route_cache_clears;
  int drain_on_completion;
  /* route (the HCM's cached route, re-matched after ClearRouteCache) */
  routecfg_t *rc;
  const route_t *route;
  const vhost_t *vhost;
  int route_cached;
  int route_blocked; /* response headers went out: the route is final */
  uint32_t buffer_limit; /* the filter manager's buffer limit */
  int64_t idle_timeout_ms;
  struct event *idle_timer, *request_timer;
  struct router *router;
  char upstream_host[64];
  /* %UPSTREAM_LOCAL_ADDRESS% and %UPSTREAM_TRANSPORT_FAILURE_REASON% */
  char upstream_local[64], transport_failure[96];
  char cluster_name[128];
  int attempt_count;
} stream_t;

/* ---- connection -> stream (conn.c calls these) ---- */
/* Creates the stream for a parsed request head and runs decodeHeaders;
 * sets conn->st before anything runs. */
void stream_new(struct dconn *c, h1_head_t *head, int end_stream);
void stream_decode_data(stream_t *st, obuf_t *data, int end_stream);
void stream_decode_trailers(stream_t *st, hmap_t *trailers);
/* The client went away (DC): reset the stream, OnDestroy runs promptly. */
void stream_downstream_reset(stream_t *st);
/* A codec error after the head: the codec's local reply, then close. */
void stream_protocol_error(stream_t *st, int status, const char *details);
/* A codec error (or header timeout) with no stream yet. */
void stream_protocol_error_new(struct dconn *c, int status, const char *details);
/* The response is complete on the wire: the connection lets go of st. */
void stream_detach(stream_t *st);

/* ---- filter manager (the golang filter's callbacks) ---- */
void fm_continue(stream_t *st, int dir);
void fm_inject_data(stream_t *st, int dir, obuf_t *data, int end_stream);
void fm_add_data(stream_t *st, int dir, obuf_t *data, int streaming);
void fm_send_local_reply(stream_t *st, int code, const char *body, size_t body_len, const hmap_t *headers,
                         const char *details);
uint32_t fm_buffer_limit(stream_t *st);
void fm_watermark(stream_t *st, int dir, int above);
void fm_clear_route_cache(stream_t *st);

/* ---- router -> stream ---- */
void fm_encode_headers(stream_t *st, int end_stream);
void fm_encode_data(stream_t *st, obuf_t *data, int end_stream);
void fm_encode_trailers(stream_t *st);
/* A local reply from the HCM or router, with response flag rf (-1: none)
 * and the route's response headers when with_route_headers. */
void stream_local_reply(stream_t *st, int code, const char *body, int rf, const char *details,
                        int with_route_headers);
void stream_reset(stream_t *st, const char *why);
void stream_unref(stream_t *st);
void stream_set_flag(stream_t *st, int rf);
/* The stream saw activity: restart the stream idle timer. */
void stream_touch(stream_t *st);

/* ---- hcm.c ---- */
/* The route the router uses: the cached one, re-matched if it was cleared. */
const route_t *hcm_route(stream_t *st);
/* decodeHeaders prelude: validation, 100-continue, path and host
 * normalisation, x-forwarded-*, x-request-id, the route. 0 to go on. */
int hcm_decode_headers(stream_t *st, int end_stream);
void hcm_arm_timers(stream_t *st);
void hcm_disarm_timers(stream_t *st);
void hcm_log(stream_t *st);
void hcm_count_response(stream_t *st);
/* Fills a formatter context from the stream. */
struct fmt_ctx;
void hcm_fmt_ctx(stream_t *st, struct fmt_ctx *c);

/* ---- router.c ---- */
void router_headers(stream_t *st, int end_stream);
void router_data(stream_t *st, obuf_t *data, int end_stream);
void router_trailers(stream_t *st);
/* Cancels any upstream request (local reply, reset, destroy). */
void router_cancel(stream_t *st);
void router_free(stream_t *st);

#endif
