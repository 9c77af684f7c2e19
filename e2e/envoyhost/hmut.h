/* Header mutations: HeaderValueOption lists (request_headers_to_add,
 * response_headers_to_add, local reply headers_to_add) and removal lists,
 * applied as Envoy's HeaderParser::evaluateHeaders does
 * (source/common/router/header_parser.cc): values are substitution format
 * strings, empty results are skipped unless keep_empty_value. */
#ifndef ENVOYHOST_HMUT_H
#define ENVOYHOST_HMUT_H

#include <jansson.h>

#include "format.h"
#include "headermap.h"

enum { HA_APPEND_IF_EXISTS_OR_ADD, HA_ADD_IF_ABSENT, HA_OVERWRITE_IF_EXISTS_OR_ADD, HA_OVERWRITE_IF_EXISTS };

typedef struct hmut {
  char *key;
  fmt_t *value;
  int action, keep_empty;
} hmut_t;

typedef struct hmuts {
  hmut_t *add;
  size_t nadd;
  char **remove;
  size_t nremove;
} hmuts_t;

/* add: a JSON array of HeaderValueOption; remove: an array of names (either may be NULL). */
int hmuts_parse(json_t *add, json_t *remove, hmuts_t *out, char *err, size_t errlen);
void hmuts_free(hmuts_t *m);
/* Removals first, then additions, as finalizeRequestHeaders does. */
void hmuts_apply(const hmuts_t *m, hmap_t *h, const fmt_ctx_t *c);

#endif
