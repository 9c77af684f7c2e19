/* An incremental HTTP/1.1 message parser over a libevent input buffer,
 * used by both codecs: requests on the downstream side (with Envoy's header
 * limits) and responses on the upstream side. It does what Envoy's HTTP/1
 * codec (source/common/http/http1/codec_impl.cc, BalsaParser) does with the
 * bytes: lower-cased header names, content-length or chunked bodies, chunked
 * trailers, and the protocol errors it answers with a status. */
#ifndef ENVOYHOST_H1PARSE_H
#define ENVOYHOST_H1PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "headermap.h"

struct evbuffer;

enum { H1_REQUEST, H1_RESPONSE };

/* What the message head said. Strings are owned by the parser until the
 * next message begins. */
enum { H1_UNDERSCORE_ALLOW = 0, H1_UNDERSCORE_REJECT, H1_UNDERSCORE_DROP };

typedef struct h1_head {
  char method[16];
  char *target; /* request-target as sent */
  int minor;    /* HTTP/1.<minor> */
  int status;   /* responses */
  hmap_t headers;
  int chunked, has_content_length;
  uint64_t content_length;
  int keep_alive; /* per the version and Connection header */
} h1_head_t;

typedef struct h1_callbacks {
  /* Each returns 0 to go on, 1 to stop parsing here (the caller resumes
   * with h1p_execute later, e.g. after flow control), -1 if the consumer
   * gave up on the connection. */
  int (*on_head)(void *arg, h1_head_t *h);
  int (*on_data)(void *arg, const char *p, size_t n);
  int (*on_trailers)(void *arg, hmap_t *trailers);
  int (*on_complete)(void *arg);
} h1_callbacks_t;

enum {
  H1S_HEAD,
  H1S_BODY_LENGTH,
  H1S_CHUNK_SIZE,
  H1S_CHUNK_DATA,
  H1S_CHUNK_CRLF,
  H1S_TRAILERS,
  H1S_BODY_EOF,
  H1S_DONE,
  H1S_ERROR,
};

typedef struct h1p {
  int kind;
  int state;
  /* Request limits (Envoy's max_request_headers_kb and max_headers_count);
   * 0 disables. */
  size_t max_header_bytes, max_headers;
  /* common_http_protocol_options.headers_with_underscores_action of a
   * request parser: H1_UNDERSCORE_ALLOW (default), _REJECT, _DROP */
  int underscores;
  /* Set by the upstream side before parsing a response to HEAD. */
  int response_to_head;
  size_t head_bytes;
  uint64_t remaining;
  h1_head_t head;
  hmap_t trailers;
  int saw_trailers;
  /* On H1S_ERROR: the status a server answers and Envoy's details string. */
  int err_status;
  const char *err_details;
} h1p_t;

void h1p_init(h1p_t *p, int kind);
void h1p_free(h1p_t *p);
/* Ready for the next message on a keep-alive connection. */
void h1p_reset(h1p_t *p);
/* Consumes what it can from in. Returns -1 on a protocol error (state
 * H1S_ERROR, err_* set) or when a callback returned -1; 0 otherwise. */
int h1p_execute(h1p_t *p, struct evbuffer *in, const h1_callbacks_t *cb, void *arg);
/* The peer closed: completes a read-until-close body; returns 1 if that
 * completed a message. */
int h1p_eof(h1p_t *p, const h1_callbacks_t *cb, void *arg);
int h1p_idle(const h1p_t *p);

#endif
