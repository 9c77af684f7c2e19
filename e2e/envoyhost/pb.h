/* Minimal protobuf wire-format helpers: enough to write google.protobuf.Any /
 * Struct / Value / xds TypedStruct and to read Value and Struct back. */
#ifndef ENVOYHOST_PB_H
#define ENVOYHOST_PB_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

void pb_put_varint(buf_t *b, uint64_t v);
void pb_put_tag(buf_t *b, uint32_t field, int wire);
void pb_put_bytes(buf_t *b, uint32_t field, const void *p, size_t n);
void pb_put_double(buf_t *b, uint32_t field, double d);

typedef struct pb_reader {
  const uint8_t *p, *end;
} pb_reader_t;

typedef struct pb_field {
  uint32_t num;
  int wire;
  uint64_t varint;         /* PB_VARINT, PB_I64, PB_I32 */
  const uint8_t *data;     /* PB_LEN */
  size_t len;
} pb_field_t;

/* Returns 1 and fills f for the next field, 0 at the end, -1 on malformed input. */
int pb_next(pb_reader_t *r, pb_field_t *f);

#endif
