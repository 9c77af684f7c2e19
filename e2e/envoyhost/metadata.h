/* Dynamic metadata (StreamInfo::dynamicMetadata().filter_metadata()) and
 * string filter state. Values are kept as the serialized google.protobuf.Value
 * Go hands over; a namespace serializes as a google.protobuf.Struct. */
#ifndef ENVOYHOST_METADATA_H
#define ENVOYHOST_METADATA_H

#include <stddef.h>

#include "buffer.h"

typedef struct md_field {
  char *ns, *key;
  buf_t value;
} md_field_t;

typedef struct metadata {
  md_field_t *f;
  size_t n, cap;
} metadata_t;

void md_free(metadata_t *m);
/* Struct MergeFrom semantics: the key's value is replaced. */
void md_set(metadata_t *m, const char *ns, const char *key, const void *val, size_t len);
const buf_t *md_get(const metadata_t *m, const char *ns, const char *key);
/* Serializes namespace ns as a Struct into out; returns 0 when ns is absent. */
int md_serialize_ns(const metadata_t *m, const char *ns, buf_t *out);
/* Reads a Value holding a string (or a list whose first element is one):
 * copies it into out; returns 0 if the value is not a string. */
int md_value_string(const buf_t *v, char *out, size_t outlen);
/* The protobuf Value (or a whole namespace, as the Struct Envoy keeps) as
 * JSON, for access logs and metadata matchers; NULL when absent. */
struct json_t;
struct json_t *md_value_json(const void *data, size_t len);
struct json_t *md_ns_json(const metadata_t *m, const char *ns);
/* Namespaces present, in first-set order; returns how many (at most max). */
size_t md_namespaces(const metadata_t *m, const char **out, size_t max);

#endif
