/* HCM access_log entries of type envoy.access_loggers.file
 * (extensions/access_loggers/file), with their AccessLogFilter, written when
 * a stream ends with its final request/response headers, response flags and
 * dynamic metadata, as Envoy's ActiveStream::log(DownstreamEnd) does. */
#ifndef ENVOYHOST_ACCESSLOG_H
#define ENVOYHOST_ACCESSLOG_H

#include <jansson.h>

#include "format.h"
#include "match.h"

typedef struct accesslog accesslog_t;

/* j is one AccessLog in proto3 JSON. */
accesslog_t *accesslog_parse(json_t *j, char *err, size_t errlen);
void accesslog_free(accesslog_t *l);
void accesslog_write(const accesslog_t *l, const fmt_ctx_t *c);

#endif
