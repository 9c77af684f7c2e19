#include "metadata.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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

static json_t *struct_json(const uint8_t *p, size_t n);

static json_t *list_json(const uint8_t *p, size_t n) {
  json_t *a = json_array();
  pb_reader_t r = {p, p + n};
  pb_field_t f;
  while (pb_next(&r, &f) == 1)
    if (f.num == 1 && f.wire == PB_LEN) {
      json_t *v = md_value_json(f.data, f.len);
      json_array_append_new(a, v ? v : json_null());
    }
  return a;
}

json_t *md_value_json(const void *data, size_t len) {
  pb_reader_t r = {data, (const uint8_t *)data + len};
  pb_field_t f;
  json_t *out = NULL;
  /* the last kind set wins, as protobuf parsing a oneof does */
  while (pb_next(&r, &f) == 1) {
    json_t *v = NULL;
    if (f.num == 1 && f.wire == PB_VARINT) v = json_null();
    else if (f.num == 2 && f.wire == PB_I64) {
      double d;
      memcpy(&d, &f.varint, sizeof(d));
      v = json_real(d);
    } else if (f.num == 3 && f.wire == PB_LEN) v = json_stringn((const char *)f.data, f.len);
    else if (f.num == 4 && f.wire == PB_VARINT) v = json_boolean(f.varint != 0);
    else if (f.num == 5 && f.wire == PB_LEN) v = struct_json(f.data, f.len);
    else if (f.num == 6 && f.wire == PB_LEN) v = list_json(f.data, f.len);
    if (v != NULL) {
      json_decref(out);
      out = v;
    }
  }
  return out ? out : json_null();
}

static json_t *struct_json(const uint8_t *p, size_t n) {
  json_t *o = json_object();
  pb_reader_t r = {p, p + n};
  pb_field_t f;
  while (pb_next(&r, &f) == 1) {
    if (f.num != 1 || f.wire != PB_LEN) continue;
    pb_reader_t er = {f.data, f.data + f.len};
    pb_field_t ef;
    char *key = NULL;
    json_t *val = NULL;
    while (pb_next(&er, &ef) == 1) {
      if (ef.num == 1 && ef.wire == PB_LEN) {
        free(key);
        key = strndup((const char *)ef.data, ef.len);
      } else if (ef.num == 2 && ef.wire == PB_LEN) {
        json_decref(val);
        val = md_value_json(ef.data, ef.len);
      }
    }
    if (key != NULL) json_object_set_new(o, key, val ? val : json_null());
    else json_decref(val);
    free(key);
  }
  return o;
}

json_t *md_ns_json(const metadata_t *m, const char *ns) {
  json_t *o = NULL;
  for (size_t i = 0; i < m->n; i++) {
    if (strcmp(m->f[i].ns, ns) != 0) continue;
    if (o == NULL) o = json_object();
    json_object_set_new(o, m->f[i].key, md_value_json(m->f[i].value.data, m->f[i].value.len));
  }
  return o;
}

size_t md_namespaces(const metadata_t *m, const char **out, size_t max) {
  size_t n = 0;
  for (size_t i = 0; i < m->n; i++) {
    size_t j;
    for (j = 0; j < n; j++)
      if (strcmp(out[j], m->f[i].ns) == 0) break;
    if (j == n && n < max) out[n++] = m->f[i].ns;
  }
  return n;
}
