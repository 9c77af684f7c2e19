#include "headermap.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void hmap_init(hmap_t *m) { memset(m, 0, sizeof(*m)); }

void hmap_free(hmap_t *m) {
  for (size_t i = 0; i < m->n; i++) {
    free(m->e[i].key);
    free(m->e[i].value);
  }
  free(m->e);
  memset(m, 0, sizeof(*m));
}

uint64_t hmap_size(const hmap_t *m) { return m->n; }

uint64_t hmap_byte_size(const hmap_t *m) {
  uint64_t n = 0;
  for (size_t i = 0; i < m->n; i++) n += m->e[i].klen + m->e[i].vlen;
  return n;
}

static int key_eq(const hentry_t *e, const char *key, size_t klen) {
  if (e->klen != klen) return 0;
  for (size_t i = 0; i < klen; i++)
    if (e->key[i] != (char)tolower((unsigned char)key[i])) return 0;
  return 1;
}

const hentry_t *hmap_get(const hmap_t *m, const char *key, size_t klen) {
  for (size_t i = 0; i < m->n; i++)
    if (key_eq(&m->e[i], key, klen)) return &m->e[i];
  return NULL;
}

static char *dup_n(const char *p, size_t n, int lower) {
  /* NUL-terminated so values can be handed to libevent as C strings */
  char *s = malloc(n + 1);
  if (s == NULL) abort();
  for (size_t i = 0; i < n; i++) s[i] = lower ? (char)tolower((unsigned char)p[i]) : p[i];
  s[n] = 0;
  return s;
}

void hmap_add(hmap_t *m, const char *key, size_t klen, const char *val, size_t vlen) {
  if (m->n == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    hentry_t *e = realloc(m->e, cap * sizeof(*e));
    if (e == NULL) abort();
    m->e = e;
    m->cap = cap;
  }
  hentry_t ne = {dup_n(key, klen, 1), dup_n(val, vlen, 0), klen, vlen};
  size_t pos = m->n;
  if (klen > 0 && key[0] == ':') {
    /* pseudo headers stay ahead of regular ones, as in HeaderMapImpl */
    pos = 0;
    while (pos < m->n && m->e[pos].klen > 0 && m->e[pos].key[0] == ':') pos++;
    memmove(&m->e[pos + 1], &m->e[pos], (m->n - pos) * sizeof(hentry_t));
  }
  m->e[pos] = ne;
  m->n++;
}

void hmap_set(hmap_t *m, const char *key, size_t klen, const char *val, size_t vlen) {
  /* HeaderMapImpl::setCopy removes every copy, then adds one
   * (source/common/http/header_map_impl.cc:326-329) */
  hmap_remove(m, key, klen);
  hmap_add(m, key, klen, val, vlen);
}

void hmap_remove(hmap_t *m, const char *key, size_t klen) {
  size_t j = 0;
  for (size_t i = 0; i < m->n; i++) {
    if (key_eq(&m->e[i], key, klen)) {
      free(m->e[i].key);
      free(m->e[i].value);
      continue;
    }
    m->e[j++] = m->e[i];
  }
  m->n = j;
}
