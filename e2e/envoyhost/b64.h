/* Standard base64 (RFC 4648), for the protobuf bytes the xDS companion
 * hands over inside JSON. */
#ifndef ENVOYHOST_B64_H
#define ENVOYHOST_B64_H

#include <stddef.h>

/* Returns a malloc'd buffer (NUL-terminated for convenience) or NULL. */
unsigned char *b64_decode(const char *s, size_t *out_len);
/* A malloc'd NUL-terminated encoding. */
char *b64_encode(const void *data, size_t n);

#endif
