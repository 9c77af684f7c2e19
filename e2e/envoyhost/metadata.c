#include "metadata.h"

#include <stdlib.h>
#include <string.h>

#include "pb.h"

void md_free(metadata_t *m) {
  for (size_t i = 0; i < m->n; i++) {
    free(m->f[i].ns);
    free(m->f[i].key);
    buf_free(&m->f[i].value);
  }
  free(m->f);
  memset(m, 0, sizeof(*m));
}

static md_field_t *find(const metadata_t *m, const char *ns, const char *key) {
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->f[i].ns, ns) == 0 && strcmp(m->f[i].key, key) == 0) return &m->f[i];
  return NULL;
}

void md_set(metadata_t *m, const char *ns, const char *key, const void *val, size_t len) {
  md_field_t *f = find(m, ns, key);
  if (f == NULL) {
    if (m->n == m->cap) {
      size_t cap = m->cap ? m->cap * 2 : 4;
      md_field_t *nf = realloc(m->f, cap * sizeof(*nf));
      if (nf == NULL) abort();
      m->f = nf;
      m->cap = cap;
    }
    f = &m->f[m->n++];
    memset(f, 0, sizeof(*f));
    f->ns = strdup(ns);
    f->key = strdup(key);
    if (f->ns == NULL || f->key == NULL) abort();
  }
  f->value.len = 0;
  buf_append(&f->value, val, len);
}

const buf_t *md_get(const metadata_t *m, const char *ns, const char *key) {
  md_field_t *f = find(m, ns, key);
  return f ? &f->value : NULL;
}

int md_serialize_ns(const metadata_t *m, const char *ns, buf_t *out) {
  int found = 0;
  out->len = 0;
  for (size_t i = 0; i < m->n; i++) {
    if (strcmp(m->f[i].ns, ns) != 0) continue;
    found = 1;
    buf_t entry;
    buf_init(&entry);
    pb_put_bytes(&entry, 1, m->f[i].key, strlen(m->f[i].key));
    pb_put_bytes(&entry, 2, m->f[i].value.data, m->f[i].value.len);
    pb_put_bytes(out, 1, entry.data, entry.len);
    buf_free(&entry);
  }
  return found;
}

int md_value_string(const buf_t *v, char *out, size_t outlen) {
  pb_reader_t r = {(const uint8_t *)v->data, (const uint8_t *)v->data + v->len};
  pb_field_t f;
  int rc;
  while ((rc = pb_next(&r, &f)) == 1) {
    if (f.num == 3 && f.wire == PB_LEN) { /* string_value */
      size_t n = f.len < outlen - 1 ? f.len : outlen - 1;
      memcpy(out, f.data, n);
      out[n] = 0;
      return 1;
    }
    if (f.num == 6 && f.wire == PB_LEN) { /* list_value: first element */
      pb_reader_t lr = {f.data, f.data + f.len};
      pb_field_t e;
      if (pb_next(&lr, &e) == 1 && e.num == 1 && e.wire == PB_LEN) {
        buf_t inner = {(char *)e.data, e.len, e.len};
        return md_value_string(&inner, out, outlen);
      }
      return 0;
    }
  }
  return 0;
}
