#include "match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "respflags.h"

static char *dup_str(const char *s) {
  char *d = strdup(s ? s : "");
  if (d == NULL) abort();
  return d;
}

static int bad(char *err, size_t errlen, const char *what, json_t *j) {
  char *d = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  snprintf(err, errlen, "%s is not modelled by envoyhost: %s", what, d ? d : "");
  free(d);
  return -1;
}

/* ---- StringMatcher ---- */

int strmatch_parse(json_t *j, strmatch_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  static const struct { const char *key; int kind; } kinds[] = {
      {"exact", SM_EXACT}, {"prefix", SM_PREFIX}, {"suffix", SM_SUFFIX}, {"contains", SM_CONTAINS}};
  const char *k;
  json_t *v;
  int found = 0;
  json_object_foreach(j, k, v) {
    if (strcmp(k, "ignore_case") == 0) {
      out->ignore_case = json_is_true(v);
      continue;
    }
    size_t i;
    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
      if (strcmp(k, kinds[i].key) == 0) break;
    if (i == sizeof(kinds) / sizeof(kinds[0]) || !json_is_string(v))
      return bad(err, errlen, "StringMatcher field", j);
    out->kind = kinds[i].kind;
    out->value = dup_str(json_string_value(v));
    found = 1;
  }
  if (!found) return bad(err, errlen, "StringMatcher without a pattern", j);
  return 0;
}

void strmatch_free(strmatch_t *m) { free(m->value); }

/* StringMatcherImpl::match */
int strmatch_match(const strmatch_t *m, const char *v, size_t n) {
  size_t l = strlen(m->value);
  int (*cmp)(const char *, const char *, size_t) = m->ignore_case ? strncasecmp : strncmp;
  switch (m->kind) {
  case SM_EXACT: return n == l && cmp(v, m->value, l) == 0;
  case SM_PREFIX: return n >= l && cmp(v, m->value, l) == 0;
  case SM_SUFFIX: return n >= l && cmp(v + n - l, m->value, l) == 0;
  case SM_CONTAINS:
    for (size_t i = 0; i + l <= n; i++)
      if (cmp(v + i, m->value, l) == 0) return 1;
    return 0;
  }
  return 0;
}

/* ---- HeaderMatcher ---- */

int hdrmatch_parse(json_t *j, hdrmatch_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  out->kind = HM_PRESENT;
  out->present = 1; /* no specifier: presence (HeaderUtility::createHeaderData) */
  const char *k;
  json_t *v;
  json_object_foreach(j, k, v) {
    if (strcmp(k, "name") == 0) {
      out->name = dup_str(json_string_value(v));
      for (char *c = out->name; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    } else if (strcmp(k, "invert_match") == 0) {
      out->invert = json_is_true(v);
    } else if (strcmp(k, "treat_missing_header_as_empty") == 0) {
      out->treat_missing_as_empty = json_is_true(v);
    } else if (strcmp(k, "present_match") == 0) {
      out->kind = HM_PRESENT;
      out->present = json_is_true(v);
    } else if (strcmp(k, "string_match") == 0) {
      out->kind = HM_STRING;
      if (strmatch_parse(v, &out->sm, err, errlen) != 0) return -1;
    } else if (strcmp(k, "exact_match") == 0 || strcmp(k, "prefix_match") == 0 || strcmp(k, "suffix_match") == 0 ||
               strcmp(k, "contains_match") == 0) {
      /* the deprecated forms, as StringMatchers without ignore_case;
       * exact_match "" matches any value (HeaderDataExactMatch) */
      out->kind = HM_STRING;
      out->sm.kind = k[0] == 'e' ? SM_EXACT : k[0] == 'p' ? SM_PREFIX : k[0] == 's' ? SM_SUFFIX : SM_CONTAINS;
      out->sm.value = dup_str(json_string_value(v));
      if (k[0] == 'e' && out->sm.value[0] == 0) {
        out->kind = HM_PRESENT;
        out->present = 1;
      }
    } else if (strcmp(k, "range_match") == 0) {
      out->kind = HM_RANGE;
      out->range_start = json_integer_value(json_object_get(v, "start"));
      out->range_end = json_integer_value(json_object_get(v, "end"));
      json_t *s = json_object_get(v, "start"), *e = json_object_get(v, "end");
      /* proto3 JSON writes int64 as strings */
      if (json_is_string(s)) out->range_start = strtoll(json_string_value(s), NULL, 10);
      if (json_is_string(e)) out->range_end = strtoll(json_string_value(e), NULL, 10);
    } else {
      return bad(err, errlen, "HeaderMatcher field", j);
    }
  }
  if (out->name == NULL || out->name[0] == 0) return bad(err, errlen, "HeaderMatcher without a name", j);
  return 0;
}

void hdrmatch_free(hdrmatch_t *m) {
  free(m->name);
  strmatch_free(&m->sm);
}

static int specific(const hdrmatch_t *m, const char *v, size_t n) {
  if (m->kind == HM_STRING) return strmatch_match(&m->sm, v, n);
  char *end;
  char tmp[32];
  if (n == 0 || n >= sizeof(tmp)) return 0;
  memcpy(tmp, v, n);
  tmp[n] = 0;
  long long x = strtoll(tmp, &end, 10);
  return *end == 0 && x >= m->range_start && x < m->range_end;
}

int hdrmatch_match(const hdrmatch_t *m, const hmap_t *h) {
  size_t klen = strlen(m->name);
  int any = 0;
  for (size_t i = 0; i < h->n; i++)
    if (h->e[i].klen == klen && memcmp(h->e[i].key, m->name, klen) == 0) any = 1;
  if (m->kind == HM_PRESENT) {
    /* HeaderDataPresentMatch::matchesHeaders */
    if (!any && !m->treat_missing_as_empty) return m->invert == m->present;
    return m->present != m->invert;
  }
  if (!any) {
    if (!m->treat_missing_as_empty) return 0;
    return specific(m, "", 0) != m->invert;
  }
  for (size_t i = 0; i < h->n; i++) {
    const hentry_t *e = &h->e[i];
    if (e->klen != klen || memcmp(e->key, m->name, klen) != 0) continue;
    if (specific(m, e->value, e->vlen)) return !m->invert;
  }
  return m->invert;
}

/* ---- AccessLogFilter ---- */

enum { AF_STATUS, AF_DURATION, AF_AND, AF_OR, AF_HEADER, AF_FLAGS, AF_METADATA, AF_TRUE, AF_NOT_HC };
enum { CMP_EQ, CMP_GE, CMP_LE, CMP_NE };
enum { VM_STRING, VM_BOOL, VM_PRESENT, VM_NULL, VM_DOUBLE };

struct alfilter {
  int kind;
  int op;
  unsigned long long value;
  alfilter_t **subs;
  size_t nsubs;
  hdrmatch_t header;
  uint64_t flags; /* 0 = any flag */
  char *ns;
  char **path;
  size_t npath;
  int vm_kind, vm_bool;
  double vm_double;
  strmatch_t vm_string;
  int match_if_not_found;
};

static int parse_comparison(json_t *j, alfilter_t *f, char *err, size_t errlen) {
  json_t *c = json_object_get(j, "comparison");
  const char *op = json_string_value(json_object_get(c, "op"));
  f->op = op == NULL || strcmp(op, "EQ") == 0 ? CMP_EQ : strcmp(op, "GE") == 0 ? CMP_GE
                                                      : strcmp(op, "LE") == 0 ? CMP_LE
                                                      : strcmp(op, "NE") == 0 ? CMP_NE : -1;
  if (f->op < 0) return bad(err, errlen, "ComparisonFilter.op", c);
  json_t *v = json_object_get(c, "value");
  if (json_object_get(v, "runtime_key") && json_string_length(json_object_get(v, "runtime_key")) > 0)
    return bad(err, errlen, "ComparisonFilter.value.runtime_key (no runtime)", v);
  f->value = (unsigned long long)json_integer_value(json_object_get(v, "default_value"));
  return 0;
}

alfilter_t *alfilter_parse(json_t *j, char *err, size_t errlen) {
  if (!json_is_object(j) || json_object_size(j) != 1) {
    bad(err, errlen, "AccessLogFilter (exactly one filter per level)", j);
    return NULL;
  }
  const char *k;
  json_t *v;
  alfilter_t *f = calloc(1, sizeof(*f));
  if (f == NULL) abort();
  f->match_if_not_found = 1; /* MetadataFilter: match_if_key_not_found defaults to true */
  int rc = 0;
  json_object_foreach(j, k, v) {
    if (strcmp(k, "status_code_filter") == 0) {
      f->kind = AF_STATUS;
      rc = parse_comparison(v, f, err, errlen);
    } else if (strcmp(k, "duration_filter") == 0) {
      f->kind = AF_DURATION;
      rc = parse_comparison(v, f, err, errlen);
    } else if (strcmp(k, "and_filter") == 0 || strcmp(k, "or_filter") == 0) {
      f->kind = k[0] == 'a' ? AF_AND : AF_OR;
      json_t *subs = json_object_get(v, "filters");
      for (size_t i = 0; rc == 0 && i < json_array_size(subs); i++) {
        alfilter_t *s = alfilter_parse(json_array_get(subs, i), err, errlen);
        if (s == NULL) {
          rc = -1;
          break;
        }
        f->subs = realloc(f->subs, (f->nsubs + 1) * sizeof(*f->subs));
        if (f->subs == NULL) abort();
        f->subs[f->nsubs++] = s;
      }
    } else if (strcmp(k, "header_filter") == 0) {
      f->kind = AF_HEADER;
      rc = hdrmatch_parse(json_object_get(v, "header"), &f->header, err, errlen);
    } else if (strcmp(k, "response_flag_filter") == 0) {
      f->kind = AF_FLAGS;
      json_t *flags = json_object_get(v, "flags");
      for (size_t i = 0; i < json_array_size(flags); i++) {
        int b = respflag_parse(json_string_value(json_array_get(flags, i)));
        if (b < 0) {
          rc = bad(err, errlen, "response flag", json_array_get(flags, i));
          break;
        }
        f->flags |= RF_BIT(b);
      }
    } else if (strcmp(k, "not_health_check_filter") == 0) {
      f->kind = AF_NOT_HC; /* NotHealthCheckFilter: not a request the health_check filter answered */
    } else if (strcmp(k, "metadata_filter") == 0) {
      f->kind = AF_METADATA;
      json_t *mif = json_object_get(v, "match_if_key_not_found");
      if (mif) f->match_if_not_found = json_is_true(mif);
      json_t *m = json_object_get(v, "matcher");
      f->ns = dup_str(json_string_value(json_object_get(m, "filter")));
      json_t *path = json_object_get(m, "path");
      for (size_t i = 0; i < json_array_size(path); i++) {
        f->path = realloc(f->path, (f->npath + 1) * sizeof(char *));
        if (f->path == NULL) abort();
        f->path[f->npath++] = dup_str(json_string_value(json_object_get(json_array_get(path, i), "key")));
      }
      json_t *vm = json_object_get(m, "value");
      if (json_object_get(vm, "string_match")) {
        f->vm_kind = VM_STRING;
        rc = strmatch_parse(json_object_get(vm, "string_match"), &f->vm_string, err, errlen);
      } else if (json_object_get(vm, "bool_match")) {
        f->vm_kind = VM_BOOL;
        f->vm_bool = json_is_true(json_object_get(vm, "bool_match"));
      } else if (json_object_get(vm, "present_match")) {
        f->vm_kind = VM_PRESENT;
      } else if (json_object_get(vm, "null_match")) {
        f->vm_kind = VM_NULL;
      } else if (json_object_get(json_object_get(vm, "double_match"), "exact")) {
        f->vm_kind = VM_DOUBLE;
        f->vm_double = json_number_value(json_object_get(json_object_get(vm, "double_match"), "exact"));
      } else {
        rc = bad(err, errlen, "MetadataFilter value matcher", vm);
      }
    } else {
      rc = bad(err, errlen, "AccessLogFilter kind", j);
    }
  }
  if (rc != 0) {
    alfilter_free(f);
    return NULL;
  }
  return f;
}

void alfilter_free(alfilter_t *f) {
  if (f == NULL) return;
  for (size_t i = 0; i < f->nsubs; i++) alfilter_free(f->subs[i]);
  free(f->subs);
  if (f->kind == AF_HEADER) hdrmatch_free(&f->header);
  free(f->ns);
  for (size_t i = 0; i < f->npath; i++) free(f->path[i]);
  free(f->path);
  strmatch_free(&f->vm_string);
  free(f);
}

static int compare(const alfilter_t *f, unsigned long long lhs) {
  switch (f->op) {
  case CMP_GE: return lhs >= f->value;
  case CMP_LE: return lhs <= f->value;
  case CMP_NE: return lhs != f->value;
  default: return lhs == f->value;
  }
}

static int metadata_matches(const alfilter_t *f, const fmt_ctx_t *c) {
  json_t *v = c->md ? md_ns_json(c->md, f->ns) : NULL;
  for (size_t i = 0; v != NULL && i < f->npath; i++) {
    json_t *next = json_is_object(v) ? json_object_get(v, f->path[i]) : NULL;
    if (next) json_incref(next);
    json_decref(v);
    v = next;
  }
  int r;
  if (v == NULL || (f->npath == 0 && v == NULL)) {
    r = f->match_if_not_found;
  } else {
    switch (f->vm_kind) {
    case VM_STRING: r = json_is_string(v) && strmatch_match(&f->vm_string, json_string_value(v), json_string_length(v)); break;
    case VM_BOOL: r = json_is_boolean(v) && json_is_true(v) == f->vm_bool; break;
    case VM_NULL: r = json_is_null(v); break;
    case VM_DOUBLE: r = json_is_number(v) && json_number_value(v) == f->vm_double; break;
    default: r = !json_is_null(v); break;
    }
  }
  json_decref(v);
  return r;
}

int alfilter_eval(const alfilter_t *f, const fmt_ctx_t *c) {
  switch (f->kind) {
  case AF_STATUS: return compare(f, (unsigned long long)c->code);
  case AF_DURATION: return c->duration_ms >= 0 && compare(f, (unsigned long long)c->duration_ms);
  case AF_AND:
    for (size_t i = 0; i < f->nsubs; i++)
      if (!alfilter_eval(f->subs[i], c)) return 0;
    return 1;
  case AF_OR:
    for (size_t i = 0; i < f->nsubs; i++)
      if (alfilter_eval(f->subs[i], c)) return 1;
    return 0;
  case AF_HEADER: return c->req != NULL && hdrmatch_match(&f->header, c->req);
  case AF_FLAGS: return f->flags ? (c->flags & f->flags) != 0 : c->flags != 0;
  case AF_METADATA: return metadata_matches(f, c);
  case AF_TRUE: return 1;
  case AF_NOT_HC: return !c->health_check;
  }
  return 0;
}
