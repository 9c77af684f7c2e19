#include "localreply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char kText[] = "text/plain";
static const char kJSON[] = "application/json";

/* SubstitutionFormatString: text_format, text_format_source.inline_string,
 * json_format; omit_empty_values; content_type (BodyFormatter). */
static int parse_format(json_t *j, fmt_t **out, char **content_type, char *err, size_t errlen) {
  const char *k;
  json_t *v;
  json_object_foreach(j, k, v) {
    if (strcmp(k, "text_format") != 0 && strcmp(k, "text_format_source") != 0 && strcmp(k, "json_format") != 0 &&
        strcmp(k, "omit_empty_values") != 0 && strcmp(k, "content_type") != 0) {
      snprintf(err, errlen, "SubstitutionFormatString.%s is not modelled by envoyhost", k);
      return -1;
    }
  }
  int omit = json_is_true(json_object_get(j, "omit_empty_values"));
  json_t *jf = json_object_get(j, "json_format");
  json_t *tfs = json_object_get(j, "text_format_source");
  const char *text = json_string_value(json_object_get(j, "text_format"));
  if (tfs != NULL) {
    text = json_string_value(json_object_get(tfs, "inline_string"));
    if (text == NULL) {
      snprintf(err, errlen, "text_format_source: only inline_string is modelled by envoyhost");
      return -1;
    }
  }
  if (jf != NULL) *out = fmt_parse_json(jf, omit, err, errlen);
  else *out = fmt_parse_text(text ? text : "", err, errlen);
  if (*out == NULL) return -1;
  if (!jf) fmt_set_omit_empty(*out, omit);
  const char *ct = json_string_value(json_object_get(j, "content_type"));
  *content_type = strdup(ct && ct[0] ? ct : jf ? kJSON : kText);
  return 0;
}

localreply_t *localreply_parse(json_t *j, char *err, size_t errlen) {
  localreply_t *lr = calloc(1, sizeof(*lr));
  if (lr == NULL) abort();
  if (j == NULL) return lr;
  json_t *bf = json_object_get(j, "body_format");
  if (bf != NULL && parse_format(bf, &lr->format, &lr->content_type, err, errlen) != 0) goto fail;
  json_t *ms = json_object_get(j, "mappers");
  size_t n = json_array_size(ms);
  lr->mappers = calloc(n ? n : 1, sizeof(lr_mapper_t));
  if (lr->mappers == NULL) abort();
  for (size_t i = 0; i < n; i++) {
    json_t *mj = json_array_get(ms, i);
    lr_mapper_t *m = &lr->mappers[lr->n++];
    m->filter = alfilter_parse(json_object_get(mj, "filter"), err, errlen);
    if (m->filter == NULL) goto fail;
    json_t *sc = json_object_get(mj, "status_code");
    if (sc) m->status = (int)json_integer_value(sc);
    json_t *body = json_object_get(mj, "body");
    if (body) {
      const char *s = json_string_value(json_object_get(body, "inline_string"));
      if (s == NULL) {
        snprintf(err, errlen, "ResponseMapper.body: only inline_string is modelled by envoyhost");
        goto fail;
      }
      m->has_body = 1;
      buf_append(&m->body, s, strlen(s));
    }
    json_t *bfo = json_object_get(mj, "body_format_override");
    if (bfo && parse_format(bfo, &m->format, &m->content_type, err, errlen) != 0) goto fail;
    if (hmuts_parse(json_object_get(mj, "headers_to_add"), NULL, &m->headers, err, errlen) != 0) goto fail;
  }
  return lr;
fail:
  localreply_free(lr);
  return NULL;
}

void localreply_free(localreply_t *lr) {
  if (lr == NULL) return;
  for (size_t i = 0; i < lr->n; i++) {
    lr_mapper_t *m = &lr->mappers[i];
    alfilter_free(m->filter);
    buf_free(&m->body);
    fmt_free(m->format);
    free(m->content_type);
    hmuts_free(&m->headers);
  }
  free(lr->mappers);
  fmt_free(lr->format);
  free(lr->content_type);
  free(lr);
}

void localreply_rewrite(const localreply_t *lr, fmt_ctx_t *c, int *code, buf_t *body, hmap_t *resp_headers,
                        const char **content_type) {
  char tmp[16];
  /* LocalReplyImpl::rewrite: the status is set first (status filters read
   * it), the first mapper whose filter matches rewrites body, headers and
   * status and may pick its body format, else the default format applies
   * (local_reply/local_reply.cc:103-131, 178-206) */
  c->code = *code;
  c->resp = resp_headers;
  int n = snprintf(tmp, sizeof(tmp), "%d", *code);
  hmap_set(resp_headers, ":status", 7, tmp, (size_t)n);
  const fmt_t *final_fmt = lr ? lr->format : NULL;
  const char *final_ct = lr && lr->content_type ? lr->content_type : kText;
  for (size_t i = 0; lr && i < lr->n; i++) {
    lr_mapper_t *m = &lr->mappers[i];
    c->local_body = body->data;
    c->local_body_len = body->len;
    if (!alfilter_eval(m->filter, c)) continue;
    if (m->has_body) {
      body->len = 0;
      buf_append(body, m->body.data, m->body.len);
    }
    hmuts_apply(&m->headers, resp_headers, c);
    if (m->status && m->status != *code) {
      *code = m->status;
      c->code = m->status;
      n = snprintf(tmp, sizeof(tmp), "%d", *code);
      hmap_set(resp_headers, ":status", 7, tmp, (size_t)n);
    }
    if (m->format) {
      final_fmt = m->format;
      final_ct = m->content_type;
    }
    break;
  }
  if (final_fmt != NULL) {
    c->local_body = body->data;
    c->local_body_len = body->len;
    buf_t out;
    buf_init(&out);
    fmt_render(final_fmt, c, &out);
    buf_free(body);
    *body = out;
    *content_type = final_ct;
    return;
  }
  *content_type = final_ct;
}
