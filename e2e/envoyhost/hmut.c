#include "hmut.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hmuts_parse(json_t *add, json_t *remove, hmuts_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  size_t n = json_array_size(add);
  if (n > 0) {
    out->add = calloc(n, sizeof(hmut_t));
    if (out->add == NULL) abort();
  }
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_array_get(add, i);
    json_t *h = json_object_get(o, "header");
    const char *key = json_string_value(json_object_get(h, "key"));
    const char *val = json_string_value(json_object_get(h, "value"));
    if (key == NULL || key[0] == 0) {
      snprintf(err, errlen, "HeaderValueOption without a key");
      return -1;
    }
    if (json_object_get(h, "raw_value")) {
      snprintf(err, errlen, "HeaderValue.raw_value is not modelled by envoyhost");
      return -1;
    }
    hmut_t *m = &out->add[out->nadd++];
    m->key = strdup(key);
    for (char *c = m->key; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    m->value = fmt_parse_text(val ? val : "", err, errlen);
    if (m->value == NULL) return -1;
    fmt_set_omit_empty(m->value, 1);
    m->keep_empty = json_is_true(json_object_get(o, "keep_empty_value"));
    const char *a = json_string_value(json_object_get(o, "append_action"));
    json_t *legacy = json_object_get(o, "append");
    if (legacy != NULL) {
      /* deprecated append: true appends, false overwrites */
      m->action = json_is_true(legacy) ? HA_APPEND_IF_EXISTS_OR_ADD : HA_OVERWRITE_IF_EXISTS_OR_ADD;
    } else if (a == NULL || strcmp(a, "APPEND_IF_EXISTS_OR_ADD") == 0) {
      m->action = HA_APPEND_IF_EXISTS_OR_ADD;
    } else if (strcmp(a, "ADD_IF_ABSENT") == 0) {
      m->action = HA_ADD_IF_ABSENT;
    } else if (strcmp(a, "OVERWRITE_IF_EXISTS_OR_ADD") == 0) {
      m->action = HA_OVERWRITE_IF_EXISTS_OR_ADD;
    } else if (strcmp(a, "OVERWRITE_IF_EXISTS") == 0) {
      m->action = HA_OVERWRITE_IF_EXISTS;
    } else {
      snprintf(err, errlen, "HeaderValueOption.append_action %s is not modelled by envoyhost", a);
      return -1;
    }
  }
  n = json_array_size(remove);
  if (n > 0) {
    out->remove = calloc(n, sizeof(char *));
    if (out->remove == NULL) abort();
  }
  for (size_t i = 0; i < n; i++) {
    const char *k = json_string_value(json_array_get(remove, i));
    out->remove[out->nremove] = strdup(k ? k : "");
    for (char *c = out->remove[out->nremove]; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    out->nremove++;
  }
  return 0;
}

void hmuts_free(hmuts_t *m) {
  for (size_t i = 0; i < m->nadd; i++) {
    free(m->add[i].key);
    fmt_free(m->add[i].value);
  }
  free(m->add);
  for (size_t i = 0; i < m->nremove; i++) free(m->remove[i]);
  free(m->remove);
  memset(m, 0, sizeof(*m));
}

void hmuts_apply(const hmuts_t *m, hmap_t *h, const fmt_ctx_t *c) {
  for (size_t i = 0; i < m->nremove; i++) hmap_remove(h, m->remove[i], strlen(m->remove[i]));
  for (size_t i = 0; i < m->nadd; i++) {
    const hmut_t *a = &m->add[i];
    buf_t v;
    buf_init(&v);
    fmt_render(a->value, c, &v);
    size_t kl = strlen(a->key);
    int present = hmap_get(h, a->key, kl) != NULL;
    if (v.len == 0 && !a->keep_empty) {
      buf_free(&v);
      continue;
    }
    const char *val = v.data ? v.data : "";
    switch (a->action) {
    case HA_APPEND_IF_EXISTS_OR_ADD: hmap_add(h, a->key, kl, val, v.len); break;
    case HA_ADD_IF_ABSENT:
      if (!present) hmap_add(h, a->key, kl, val, v.len);
      break;
    case HA_OVERWRITE_IF_EXISTS_OR_ADD: hmap_set(h, a->key, kl, val, v.len); break;
    case HA_OVERWRITE_IF_EXISTS:
      if (present) hmap_set(h, a->key, kl, val, v.len);
      break;
    }
    buf_free(&v);
  }
}
