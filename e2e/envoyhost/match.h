/* Matchers from Envoy's config, parsed from their proto3 JSON form:
 * StringMatcher (type/matcher/v3/string.proto; common/common/matchers.cc),
 * route HeaderMatcher (common/http/header_utility.{h,cc}) and
 * AccessLogFilter (common/access_log/access_log_impl.cc), the last shared
 * by access logs and local_reply_config mappers. safe_regex is refused:
 * the host has no RE2, and the control plane emits none. */
#ifndef ENVOYHOST_MATCH_H
#define ENVOYHOST_MATCH_H

#include <jansson.h>
#include <stddef.h>

#include "format.h"
#include "headermap.h"

typedef struct strmatch {
  int kind; /* SM_* */
  char *value;
  int ignore_case;
} strmatch_t;

enum { SM_EXACT, SM_PREFIX, SM_SUFFIX, SM_CONTAINS };

typedef struct hdrmatch {
  char *name; /* lower-case */
  int kind;   /* HM_* */
  strmatch_t sm;
  long long range_start, range_end;
  int present, invert, treat_missing_as_empty;
} hdrmatch_t;

enum { HM_PRESENT, HM_STRING, HM_RANGE };

typedef struct alfilter alfilter_t;

int strmatch_parse(json_t *j, strmatch_t *out, char *err, size_t errlen);
void strmatch_free(strmatch_t *m);
int strmatch_match(const strmatch_t *m, const char *v, size_t n);

int hdrmatch_parse(json_t *j, hdrmatch_t *out, char *err, size_t errlen);
void hdrmatch_free(hdrmatch_t *m);
/* HeaderUtility::matchHeaders for one matcher, values matched one by one
 * (envoy.reloadable_features.match_headers_individually, on by default). */
int hdrmatch_match(const hdrmatch_t *m, const hmap_t *headers);

alfilter_t *alfilter_parse(json_t *j, char *err, size_t errlen);
void alfilter_free(alfilter_t *f);
int alfilter_eval(const alfilter_t *f, const fmt_ctx_t *c);

#endif
