#ifndef ENVOYHOST_PLUGINCONFIG_H
#define ENVOYHOST_PLUGINCONFIG_H

#include "buffer.h"

/* Reads a JSON file holding the golang filter's plugin_config in the proto3
 * JSON form Envoy accepts, e.g.
 *   {"@type": "type.googleapis.com/xds.type.v3.TypedStruct",
 *    "type_url": "...", "value": {...}}
 * (or "@type": ".../google.protobuf.Struct" with the fields inline), and
 * writes the serialized google.protobuf.Any into out: the exact bytes
 * FilterConfig::newGoPluginConfig passes to envoyGoFilterNewHttpPluginConfig.
 * A file without "@type" is taken as the TypedStruct's value, with an empty
 * type_url. Returns 0, or -1 with a message in err. */
int plugin_config_from_json_file(const char *path, buf_t *out, char *err, size_t errlen);

#endif
