/* Closures the Go callbacks post to a worker (Envoy's dispatcher.post
 * lambdas): each holds a weak reference to the filter and deep copies of the
 * Go memory it needs, because Go's buffers are only valid during the call. */
#ifndef ENVOYHOST_CAPI_POST_H
#define ENVOYHOST_CAPI_POST_H

#include <stdint.h>

#include "filter.h"
#include "headermap.h"

enum {
  OP_CONTINUE,
  OP_LOCAL_REPLY,
  OP_SET_HEADER,
  OP_REMOVE_HEADER,
  OP_ADD_DATA,
  OP_INJECT_DATA,
  OP_OVERRIDE_HOST,
  OP_CLEAR_ROUTE_CACHE,
  OP_SET_METADATA,
  OP_GET_METADATA,
  OP_SET_FILTER_STATE,
  OP_GET_FILTER_STATE,
  OP_GET_PROPERTY,
  OP_GET_SECRET,
  OP_FREE_REQUEST,
};

typedef struct pcall {
  int op;
  wctl_t *ctl;
  proc_state_t *s;
  host_req_t *req;
  int i1, i2;
  char *a, *b, *c;
  size_t alen, blen, clen;
  hmap_t hdrs;
  hmap_t *target; /* header or trailer map captured when posted */
  uint64_t *out_data;
  int *out_len, *out_rc;
} pcall_t;

pcall_t *pcall_new(int op, hfilter_t *f, proc_state_t *s);
char *pcall_dup(const void *p, size_t n);
void pcall_post(hfilter_t *f, pcall_t *pc);
void free_request_later(host_req_t *r);

/* Implemented in capi.c, run on the worker thread. */
void capi_populate_metadata(hfilter_t *f, const char *ns, uint64_t *data, int *len);
void capi_populate_filter_state(hfilter_t *f, const char *key, uint64_t *data, int *len);
int capi_property(hfilter_t *f, const char *path, size_t len, uint64_t *data, int *out_len);

#endif
