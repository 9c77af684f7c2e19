#include "pluginconfig.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "pb.h"

static const char kTypedStruct[] = "type.googleapis.com/xds.type.v3.TypedStruct";
static const char kUdpaTypedStruct[] = "type.googleapis.com/udpa.type.v1.TypedStruct";
static const char kStruct[] = "type.googleapis.com/google.protobuf.Struct";

static void put_struct(buf_t *b, json_t *obj, const char *skip);

/* google.protobuf.Value: null=1, number=2, string=3, bool=4, struct=5, list=6 */
static void put_value(buf_t *b, json_t *v) {
  buf_t tmp;
  buf_init(&tmp);
  switch (json_typeof(v)) {
  case JSON_NULL:
    pb_put_tag(b, 1, PB_VARINT);
    pb_put_varint(b, 0);
    break;
  case JSON_INTEGER:
    pb_put_double(b, 2, (double)json_integer_value(v));
    break;
  case JSON_REAL:
    pb_put_double(b, 2, json_real_value(v));
    break;
  case JSON_STRING:
    pb_put_bytes(b, 3, json_string_value(v), json_string_length(v));
    break;
  case JSON_TRUE:
  case JSON_FALSE:
    pb_put_tag(b, 4, PB_VARINT);
    pb_put_varint(b, json_is_true(v) ? 1 : 0);
    break;
  case JSON_OBJECT:
    put_struct(&tmp, v, NULL);
    pb_put_bytes(b, 5, tmp.data, tmp.len);
    break;
  case JSON_ARRAY: {
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
      buf_t ev;
      buf_init(&ev);
      put_value(&ev, e);
      pb_put_bytes(&tmp, 1, ev.data, ev.len); /* ListValue.values */
      buf_free(&ev);
    }
    pb_put_bytes(b, 6, tmp.data, tmp.len);
    break;
  }
  }
  buf_free(&tmp);
}

/* google.protobuf.Struct: map<string, Value> fields = 1 (map entries: key=1, value=2) */
static void put_struct(buf_t *b, json_t *obj, const char *skip) {
  const char *k;
  json_t *v;
  json_object_foreach(obj, k, v) {
    if (skip != NULL && strcmp(k, skip) == 0) continue;
    buf_t entry, val;
    buf_init(&entry);
    buf_init(&val);
    pb_put_bytes(&entry, 1, k, strlen(k));
    put_value(&val, v);
    pb_put_bytes(&entry, 2, val.data, val.len);
    pb_put_bytes(b, 1, entry.data, entry.len);
    buf_free(&entry);
    buf_free(&val);
  }
}

int plugin_config_from_json_file(const char *path, buf_t *out, char *err, size_t errlen) {
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  if (root == NULL) {
    snprintf(err, errlen, "%s:%d: %s", path, jerr.line, jerr.text);
    return -1;
  }
  if (!json_is_object(root)) {
    snprintf(err, errlen, "%s: plugin config must be a JSON object", path);
    json_decref(root);
    return -1;
  }
  const char *type = json_string_value(json_object_get(root, "@type"));
  buf_t inner;
  buf_init(&inner);
  const char *any_type = kTypedStruct;
  if (type == NULL || strcmp(type, kTypedStruct) == 0 || strcmp(type, kUdpaTypedStruct) == 0) {
    json_t *value = type ? json_object_get(root, "value") : root;
    const char *type_url = type ? json_string_value(json_object_get(root, "type_url")) : NULL;
    if (type != NULL) any_type = type;
    if (value != NULL && !json_is_object(value)) {
      snprintf(err, errlen, "%s: TypedStruct.value must be an object", path);
      json_decref(root);
      return -1;
    }
    /* xds.type.v3.TypedStruct { string type_url = 1; google.protobuf.Struct value = 2; } */
    if (type_url != NULL && type_url[0]) pb_put_bytes(&inner, 1, type_url, strlen(type_url));
    if (value != NULL) {
      buf_t st;
      buf_init(&st);
      put_struct(&st, value, NULL);
      pb_put_bytes(&inner, 2, st.data, st.len);
      buf_free(&st);
    }
  } else if (strcmp(type, kStruct) == 0) {
    any_type = kStruct;
    put_struct(&inner, root, "@type");
  } else {
    snprintf(err, errlen, "%s: unsupported @type %s (want TypedStruct or Struct)", path, type);
    json_decref(root);
    return -1;
  }
  /* google.protobuf.Any { string type_url = 1; bytes value = 2; } */
  pb_put_bytes(out, 1, any_type, strlen(any_type));
  if (inner.len > 0) pb_put_bytes(out, 2, inner.data, inner.len);
  buf_free(&inner);
  json_decref(root);
  return 0;
}
