/* A worker: one thread running one libevent dispatcher, like an Envoy
 * worker. Other threads (Go goroutines calling back into the host) post
 * closures to it; they run in FIFO order on the worker thread, which is what
 * Envoy's Dispatcher::post guarantees and the Go SDK relies on. */
#ifndef ENVOYHOST_WORKER_H
#define ENVOYHOST_WORKER_H

#include <pthread.h>
#include <stdint.h>

struct event_base;
struct event;
struct evhttp;
struct upstream_pool;

typedef void (*task_fn)(void *arg);

typedef struct task {
  task_fn fn;
  void *arg;
  struct task *next;
} task_t;

typedef struct worker {
  uint32_t id;
  pthread_t thread;
  struct event_base *base;
  struct evhttp *http;
  struct upstream_pool *pool;
  int wake_fd; /* eventfd the posting thread writes to */
  struct event *wake_ev;
  pthread_mutex_t qmu;
  task_t *head, *tail;
  uint64_t rng;
  struct dconn *conns; /* downstream connections of this worker, for drains */
} worker_t;

/* The worker whose thread this is, or NULL on any other thread. */
worker_t *worker_current(void);
extern worker_t *g_workers;

int worker_init(worker_t *w, uint32_t id);
int worker_start(worker_t *w);
/* Runs fn(arg) on w's thread, after everything posted before it. */
void worker_post(worker_t *w, task_fn fn, void *arg);
int worker_is_thread_safe(const worker_t *w);
uint64_t worker_rand(worker_t *w);

#endif
