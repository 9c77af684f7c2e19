#include "pb.h"

#include <string.h>

void pb_put_varint(buf_t *b, uint64_t v) {
  uint8_t tmp[10];
  size_t n = 0;
  do {
    uint8_t c = v & 0x7f;
    v >>= 7;
    if (v) c |= 0x80;
    tmp[n++] = c;
  } while (v);
  buf_append(b, tmp, n);
}

void pb_put_tag(buf_t *b, uint32_t field, int wire) { pb_put_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }

void pb_put_bytes(buf_t *b, uint32_t field, const void *p, size_t n) {
  pb_put_tag(b, field, PB_LEN);
  pb_put_varint(b, n);
  buf_append(b, p, n);
}

void pb_put_double(buf_t *b, uint32_t field, double d) {
  uint64_t u;
  uint8_t le[8];
  memcpy(&u, &d, 8);
  for (int i = 0; i < 8; i++) le[i] = (uint8_t)(u >> (8 * i));
  pb_put_tag(b, field, PB_I64);
  buf_append(b, le, 8);
}

static int get_varint(pb_reader_t *r, uint64_t *v) {
  uint64_t out = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) return -1;
    uint8_t c = *r->p++;
    out |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = out;
      return 0;
    }
  }
  return -1;
}

int pb_next(pb_reader_t *r, pb_field_t *f) {
  if (r->p >= r->end) return 0;
  uint64_t key;
  if (get_varint(r, &key) < 0) return -1;
  memset(f, 0, sizeof(*f));
  f->num = (uint32_t)(key >> 3);
  f->wire = (int)(key & 7);
  switch (f->wire) {
  case PB_VARINT:
    return get_varint(r, &f->varint) < 0 ? -1 : 1;
  case PB_I64:
    if (r->end - r->p < 8) return -1;
    for (int i = 0; i < 8; i++) f->varint |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    return 1;
  case PB_I32:
    if (r->end - r->p < 4) return -1;
    for (int i = 0; i < 4; i++) f->varint |= (uint64_t)r->p[i] << (8 * i);
    r->p += 4;
    return 1;
  case PB_LEN: {
    uint64_t n;
    if (get_varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p)) return -1;
    f->data = r->p;
    f->len = (size_t)n;
    r->p += n;
    return 1;
  }
  default:
    return -1;
  }
}
