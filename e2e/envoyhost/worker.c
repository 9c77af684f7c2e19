#include "worker.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static __thread worker_t *tl_worker;
worker_t *g_workers;

worker_t *worker_current(void) { return tl_worker; }

static void run_posted(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  worker_t *w = arg;
  uint64_t v;
  if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN) hlog(LOG_ERROR, "worker %u: eventfd read: %s", w->id, strerror(errno));
  /* Take the whole queue at once; tasks posted while these run are picked up
   * on the next wake-up, keeping FIFO order across batches. */
  pthread_mutex_lock(&w->qmu);
  task_t *t = w->head;
  w->head = w->tail = NULL;
  pthread_mutex_unlock(&w->qmu);
  while (t != NULL) {
    task_t *next = t->next;
    t->fn(t->arg);
    free(t);
    t = next;
  }
}

int worker_init(worker_t *w, uint32_t id) {
  memset(w, 0, sizeof(*w));
  w->id = id;
  w->rng = (uint64_t)time(NULL) ^ ((uint64_t)id << 32) ^ (uint64_t)(uintptr_t)w;
  pthread_mutex_init(&w->qmu, NULL);
  w->base = event_base_new();
  if (w->base == NULL) return -1;
  w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (w->wake_fd < 0) return -1;
  w->wake_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, run_posted, w);
  if (w->wake_ev == NULL || event_add(w->wake_ev, NULL) < 0) return -1;
  return 0;
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  tl_worker = w;
  event_base_dispatch(w->base);
  hlog(LOG_INFO, "worker %u: dispatcher exited", w->id);
  return NULL;
}

int worker_start(worker_t *w) { return pthread_create(&w->thread, NULL, worker_main, w); }

void worker_post(worker_t *w, task_fn fn, void *arg) {
  task_t *t = malloc(sizeof(*t));
  if (t == NULL) abort();
  t->fn = fn;
  t->arg = arg;
  t->next = NULL;
  pthread_mutex_lock(&w->qmu);
  if (w->tail) w->tail->next = t;
  else w->head = t;
  w->tail = t;
  pthread_mutex_unlock(&w->qmu);
  uint64_t one = 1;
  if (write(w->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
    hlog(LOG_ERROR, "worker %u: eventfd write: %s", w->id, strerror(errno));
}

int worker_is_thread_safe(const worker_t *w) { return pthread_equal(pthread_self(), w->thread); }

uint64_t worker_rand(worker_t *w) {
  /* xorshift64*: only used for x-request-id, needs no crypto strength */
  uint64_t x = w->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  w->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}
