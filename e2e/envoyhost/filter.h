/* The host's port of Envoy's golang HTTP filter (golang_filter.cc and
 * processor_state.cc, v1.39.0): per-request objects shared with Go, the
 * per-direction state machine, and the weak-pointer guard Go callbacks use. */
#ifndef ENVOYHOST_FILTER_H
#define ENVOYHOST_FILTER_H

#include <pthread.h>
#include <stdatomic.h>

#include "api.h"
#include "buffer.h"
#include "headermap.h"
#include "worker.h"

struct stream;

typedef enum {
  FS_WAITING_HEADER,
  FS_PROCESSING_HEADER,
  FS_WAITING_DATA,
  FS_WAITING_ALL_DATA,
  FS_PROCESSING_DATA,
  FS_WAITING_TRAILER,
  FS_PROCESSING_TRAILER,
  FS_DONE,
} fstate_t;

/* GolangStatus */
enum { GS_RUNNING, GS_LOCAL_REPLY, GS_CONTINUE, GS_STOP_AND_BUFFER, GS_STOP_AND_BUFFER_WATERMARK, GS_STOP_NO_BUFFER };

enum { DIR_DECODE = 0, DIR_ENCODE = 1 };

struct hfilter;

/* weak_ptr/shared_ptr control block for the filter: Go keeps raw request
 * pointers, so every callback first "locks" the filter through this. */
typedef struct wctl {
  pthread_mutex_t mu;
  struct hfilter *obj;
  int strong, weak;
} wctl_t;

/* ProcessorState. processState must stay the first member: Go reads req,
 * is_encoding and state through the pointer it is given. */
typedef struct proc_state {
  processState base;
  hmap_t *headers;  /* readable/writable by Go while non-NULL */
  hmap_t *trailers;
  buflist_t do_data_list;
  obuf_t *data_buffer; /* watermark buffer for data Go has not seen yet */
  int above_high, watermark_requested;
  int end_stream, do_end_stream;
} proc_state_t;

/* HttpRequestInternal: owned by Go once it has seen it, freed by the GC
 * finalizer through envoyGoFilterHttpFinalize. httpRequest must be first. */
typedef struct host_req {
  httpRequest base;
  proc_state_t dec, enc;
  wctl_t *ctl; /* weak reference to the filter */
  worker_t *w;
  buf_t str_value; /* strValue: reply slot for GetStringValue & co, under filter mutex */
} host_req_t;

typedef struct hfilter {
  wctl_t *ctl;
  pthread_mutex_t mu; /* Envoy's Filter::mutex_ */
  atomic_int has_destroyed;
  host_req_t *req;
  worker_t *w;
  struct stream *st;
  uint64_t config_id;
} hfilter_t;

extern atomic_long g_live_requests; /* host_req objects not yet freed */

hfilter_t *filter_new(struct stream *st, worker_t *w, const char *plugin_name, size_t plugin_name_len,
                      uint64_t config_id);
hfilter_t *filter_lock(wctl_t *ctl);
void filter_release(hfilter_t *f);
void wctl_weak_release(wctl_t *ctl);
int filter_has_destroyed(hfilter_t *f);
void host_req_free(host_req_t *r);

static inline fstate_t ps_state(const proc_state_t *s) { return (fstate_t)s->base.state; }
static inline int ps_is_encoding(const proc_state_t *s) { return s->base.is_encoding; }
int ps_is_processing_in_go(const proc_state_t *s);
int filter_is_processing_in_go(hfilter_t *f);
proc_state_t *filter_state(hfilter_t *f, int dir);

/* Filter chain entry points; return 1 when the filter lets the frame pass. */
int filter_headers(hfilter_t *f, int dir, hmap_t *headers, int end_stream);
int filter_data(hfilter_t *f, int dir, obuf_t *data, int end_stream);
int filter_trailers(hfilter_t *f, int dir, hmap_t *trailers);
void filter_on_stream_complete(hfilter_t *f);
void filter_log(hfilter_t *f, int type, hmap_t *req_h, hmap_t *req_t, hmap_t *resp_h, hmap_t *resp_t);
void filter_on_destroy(hfilter_t *f);

/* Worker-thread halves of the posted Go callbacks. */
void filter_continue_status_internal(hfilter_t *f, proc_state_t *s, int status);
void filter_send_local_reply_internal(hfilter_t *f, proc_state_t *s, int code, const char *body, size_t body_len,
                                      const hmap_t *headers, const char *details);

#endif
