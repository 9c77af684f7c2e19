/* The HCM's local_reply_config: mappers (an AccessLogFilter, then a new
 * status, body, body format and headers) and a default body format, applied
 * to every local reply the host or a filter sends, as LocalReplyImpl::rewrite
 * does (source/common/local_reply/local_reply.cc). */
#ifndef ENVOYHOST_LOCALREPLY_H
#define ENVOYHOST_LOCALREPLY_H

#include <jansson.h>

#include "buffer.h"
#include "format.h"
#include "hmut.h"
#include "match.h"

typedef struct lr_mapper {
  alfilter_t *filter;
  int status; /* 0: keep */
  int has_body;
  buf_t body;
  fmt_t *format;
  char *content_type;
  hmuts_t headers;
} lr_mapper_t;

typedef struct localreply {
  lr_mapper_t *mappers;
  size_t n;
  fmt_t *format;      /* NULL: the body stays as it is */
  char *content_type; /* of format */
} localreply_t;

/* j is the LocalReplyConfig in proto3 JSON; NULL gives Envoy's default. */
localreply_t *localreply_parse(json_t *j, char *err, size_t errlen);
void localreply_free(localreply_t *lr);

/* Rewrites code, body and headers in place; content_type gets the
 * formatter's content type (text/plain by default). c->code and
 * c->local_body are updated as the mappers see them. */
void localreply_rewrite(const localreply_t *lr, fmt_ctx_t *c, int *code, buf_t *body, hmap_t *resp_headers,
                        const char **content_type);

#endif
