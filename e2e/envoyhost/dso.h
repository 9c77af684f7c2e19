/* The Go filter library: dlopen + the 10 exports Envoy's HttpFilterDsoImpl
 * resolves (contrib/golang/common/dso/dso.cc). */
#ifndef ENVOYHOST_DSO_H
#define ENVOYHOST_DSO_H

#include <stdint.h>

#include <stddef.h>

#include "api.h"

typedef struct dso {
  void *handle;
  uint64_t (*new_config)(httpConfig *c);
  uint64_t (*merge_config)(uint64_t name_ptr, uint64_t name_len, uint64_t parent, uint64_t child);
  void (*destroy_config)(uint64_t id, long long need_delay);
  uint64_t (*on_header)(processState *s, uint64_t end_stream, uint64_t header_num, uint64_t header_bytes);
  uint64_t (*on_data)(processState *s, uint64_t end_stream, uint64_t buffer, uint64_t length);
  void (*on_log)(httpRequest *r, uint64_t type, processState *dec, processState *enc, uint64_t req_hdr_num,
                 uint64_t req_hdr_bytes, uint64_t req_trl_num, uint64_t req_trl_bytes, uint64_t resp_hdr_num,
                 uint64_t resp_hdr_bytes, uint64_t resp_trl_num, uint64_t resp_trl_bytes);
  void (*on_stream_complete)(httpRequest *r);
  void (*on_destroy)(httpRequest *r, uint64_t reason);
  void (*sema_dec)(httpRequest *r);
  void (*cleanup)(void);
} dso_t;

extern dso_t g_dso;

/* Loads path the way Envoy does (RTLD_LAZY; the Go runtime starts and the
 * filter's init() registers plugins during this call). 0 or -1 + err. */
int dso_load(const char *path, char *err, size_t errlen);

#endif
