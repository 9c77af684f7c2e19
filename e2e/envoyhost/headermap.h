/* An ordered header map with Envoy's semantics: lower-case keys, pseudo
 * headers (":path", ":status", ...) first, byteSize() = sum of key and value
 * lengths, which Go uses to size the buffers CopyHeaders fills. */
#ifndef ENVOYHOST_HEADERMAP_H
#define ENVOYHOST_HEADERMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct hentry {
  char *key, *value;
  size_t klen, vlen;
} hentry_t;

typedef struct hmap {
  hentry_t *e;
  size_t n, cap;
} hmap_t;

void hmap_init(hmap_t *m);
void hmap_free(hmap_t *m);
uint64_t hmap_size(const hmap_t *m);
uint64_t hmap_byte_size(const hmap_t *m);
/* First value for key (matched case-insensitively, as Envoy lower-cases on
 * insert and lookup), or NULL. */
const hentry_t *hmap_get(const hmap_t *m, const char *key, size_t klen);
void hmap_add(hmap_t *m, const char *key, size_t klen, const char *val, size_t vlen);
/* setCopy: remove every entry of key, then add one. */
void hmap_set(hmap_t *m, const char *key, size_t klen, const char *val, size_t vlen);
void hmap_remove(hmap_t *m, const char *key, size_t klen);
static inline const char *hmap_get_str(const hmap_t *m, const char *key);

#include <string.h>
static inline const char *hmap_get_str(const hmap_t *m, const char *key) {
  const hentry_t *e = hmap_get(m, key, strlen(key));
  return e ? e->value : NULL;
}

#endif
