/* Envoy's substitution format strings (SubstitutionFormatString: text and
 * json_format) for access logs and local reply bodies, with the command
 * operators this host implements. An operator it does not implement is a
 * configuration error, so the config is refused rather than logged wrong.
 * Follows source/common/formatter/substitution_formatter.cc (parse,
 * FormatterImpl::format, JsonFormatterImpl::format). */
#ifndef ENVOYHOST_FORMAT_H
#define ENVOYHOST_FORMAT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "buffer.h"
#include "headermap.h"
#include "metadata.h"

/* Everything an operator can read about one stream. */
typedef struct fmt_ctx {
  const hmap_t *req, *resp, *resp_trailers;
  int code;
  const char *details;
  uint64_t flags; /* response flags, see respflags.h */
  const char *local_body;
  size_t local_body_len;
  const metadata_t *md;
  const char *upstream_host, *cluster, *route_name;
  const char *remote, *local;
  const char *upstream_local, *transport_failure; /* "" when not known */
  int minor;
  uint64_t start_wall_ms;
  int64_t duration_ms, request_duration_ms, response_duration_ms; /* -1: not known */
  uint64_t bytes_received, bytes_sent;
  int attempts;
  int health_check; /* StreamInfo::healthCheck(): the health_check filter took the request */
} fmt_ctx_t;

typedef struct fmt fmt_t;

/* Parses a text format; NULL with err set if it is invalid or uses an
 * operator this host does not implement. */
fmt_t *fmt_parse_text(const char *format, char *err, size_t errlen);
/* Parses a json_format struct (a JSON object of format strings). */
fmt_t *fmt_parse_json(json_t *obj, int omit_empty_values, char *err, size_t errlen);
void fmt_free(fmt_t *f);
/* Missing values print nothing instead of "-" (header values do this). */
void fmt_set_omit_empty(fmt_t *f, int omit);
/* Appends the formatted output to out. */
void fmt_render(const fmt_t *f, const fmt_ctx_t *c, buf_t *out);
int fmt_is_json(const fmt_t *f);

#endif
