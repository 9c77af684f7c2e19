#include "registry.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "chain.h"
#include "host.h"
#include "listener.h"
#include "log.h"

/* A named, ref-counted resource of one kind. */
typedef struct entry {
  char *name;
  void *obj;
} entry_t;

typedef struct table {
  entry_t *e;
  size_t n;
} table_t;

typedef struct secret {
  char *name;
  buf_t value;
} secret_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static table_t routes, clusters, ecds, listeners;
static secret_t *secrets;
static size_t nsecrets;

static void *lookup(const table_t *t, const char *name) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->e[i].name, name) == 0) return t->e[i].obj;
  return NULL;
}

static void put(table_t *t, const char *name, void *obj) {
  t->e = realloc(t->e, (t->n + 1) * sizeof(entry_t));
  if (t->e == NULL) abort();
  t->e[t->n].name = strdup(name);
  t->e[t->n].obj = obj;
  t->n++;
}

static void table_free(table_t *t, void (*unref)(void *)) {
  for (size_t i = 0; i < t->n; i++) {
    if (unref) unref(t->e[i].obj);
    free(t->e[i].name);
  }
  free(t->e);
  memset(t, 0, sizeof(*t));
}

static void unref_route(void *o) { routecfg_unref(o); }
static void unref_cluster(void *o) { cluster_unref(o); }
static void unref_fconfig(void *o) { fconfig_unref(o); }

routecfg_t *registry_route(const char *name) {
  pthread_mutex_lock(&mu);
  routecfg_t *rc = name ? lookup(&routes, name) : NULL;
  if (rc) routecfg_ref(rc);
  pthread_mutex_unlock(&mu);
  return rc;
}

cluster_t *registry_cluster(const char *name) {
  pthread_mutex_lock(&mu);
  cluster_t *c = lookup(&clusters, name);
  if (c) cluster_ref(c);
  pthread_mutex_unlock(&mu);
  return c;
}

fconfig_t *registry_ecds(const char *name) {
  pthread_mutex_lock(&mu);
  fconfig_t *f = lookup(&ecds, name);
  if (f) fconfig_ref(f);
  pthread_mutex_unlock(&mu);
  return f;
}

int registry_secret(const char *name, buf_t *out) {
  pthread_mutex_lock(&mu);
  int found = 0;
  for (size_t i = 0; i < nsecrets; i++)
    if (strcmp(secrets[i].name, name) == 0) {
      buf_append(out, secrets[i].value.data, secrets[i].value.len);
      found = 1;
    }
  pthread_mutex_unlock(&mu);
  return found;
}

chain_t *registry_listener_chain(listener_t *l) {
  pthread_mutex_lock(&mu);
  chain_t *c = l->chain;
  if (c) chain_ref(c);
  pthread_mutex_unlock(&mu);
  return c;
}

void registry_listeners(buf_t *out) {
  pthread_mutex_lock(&mu);
  for (size_t i = 0; i < listeners.n; i++) {
    listener_t *l = listeners.e[i].obj;
    char line[256];
    int n = snprintf(line, sizeof(line), "%s::%s\n", l->name, l->bound);
    buf_append(out, line, (size_t)n);
  }
  pthread_mutex_unlock(&mu);
}

/* ---- apply ---- */

static const char *hash_of(json_t *o) {
  const char *h = json_string_value(json_object_get(o, "hash"));
  return h ? h : "";
}

static fconfig_t *build_golang(json_t *g, const char *label, char *err, size_t errlen) {
  const char *plugin = json_string_value(json_object_get(g, "plugin_name"));
  const char *id = json_string_value(json_object_get(g, "library_id"));
  /* DsoManager loads a library once per library_id; a Go runtime is one
   * per process, so this host runs exactly one (--library) */
  if (id && id[0]) {
    if (g_cfg.library_id == NULL) g_cfg.library_id = strdup(id);
    else if (strcmp(g_cfg.library_id, id) != 0) {
      snprintf(err, errlen, "%s: library_id %s: envoyhost loads one Go library (%s), not a second", label, id,
               g_cfg.library_id);
      return NULL;
    }
  }
  const char *cfg = json_string_value(json_object_get(g, "plugin_config"));
  size_t n = 0;
  unsigned char *any = b64_decode(cfg ? cfg : "", &n);
  if (plugin == NULL || any == NULL) {
    free(any);
    snprintf(err, errlen, "%s: golang filter config without plugin_name or plugin_config", label);
    return NULL;
  }
  fconfig_t *f = fconfig_create(plugin, label, hash_of(g), any, n, err, errlen);
  free(any);
  return f;
}

/* One listener of the snapshot: the listener object (kept, or freshly
 * bound for a new address) and the chain it will run. */
typedef struct lplan {
  listener_t *l, *old;
  chain_t *chain;
  int fresh;
} lplan_t;

static void push_ptr(void ***arr, size_t *n, void *p) {
  *arr = realloc(*arr, (*n + 1) * sizeof(void *));
  if (*arr == NULL) abort();
  (*arr)[(*n)++] = p;
}

static void free_secrets(secret_t *s, size_t n) {
  for (size_t k = 0; k < n; k++) {
    free(s[k].name);
    buf_free(&s[k].value);
  }
  free(s);
}

int registry_apply(const char *json, size_t len, char *err, size_t errlen) {
  json_error_t jerr;
  json_t *root = json_loadb(json, len, 0, &jerr);
  if (root == NULL) {
    snprintf(err, errlen, "config push is not JSON: %s", jerr.text);
    return -1;
  }
  table_t new_routes = {0}, new_clusters = {0}, new_ecds = {0};
  lplan_t *plans = NULL;
  size_t nplans = 0;
  secret_t *new_secrets = NULL;
  size_t nnew_secrets = 0;
  int rc = -1;
  size_t i;
  json_t *v;
  char label[256];

  /* ECDS: TypedExtensionConfig resources; an unchanged one keeps its config.
   * A changed one is parsed (the filter's config created) before the old one
   * is released, as DynamicFilterConfigProviderImpl::onConfigUpdate
   * instantiates the new factory first (common/filter/config_discovery_impl.h:111-120):
   * state the filter keeps per name (its pools) survives the swap */
  json_array_foreach(json_object_get(root, "extension_configs"), i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    pthread_mutex_lock(&mu);
    fconfig_t *old = lookup(&ecds, name ? name : "");
    if (old && strcmp(old->hash, hash_of(v)) == 0) fconfig_ref(old);
    else old = NULL;
    pthread_mutex_unlock(&mu);
    if (old == NULL) {
      snprintf(label, sizeof(label), "ecds %s", name ? name : "?");
      old = build_golang(v, label, err, errlen);
      if (old == NULL) goto done;
    }
    put(&new_ecds, name, old);
  }
  json_array_foreach(json_object_get(root, "clusters"), i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    pthread_mutex_lock(&mu);
    cluster_t *old = lookup(&clusters, name ? name : "");
    if (old && strcmp(old->hash, hash_of(v)) == 0) cluster_ref(old);
    else old = NULL;
    pthread_mutex_unlock(&mu);
    if (old == NULL && (old = cluster_parse(v, err, errlen)) == NULL) goto done;
    put(&new_clusters, name, old);
  }
  json_array_foreach(json_object_get(root, "route_configs"), i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    pthread_mutex_lock(&mu);
    routecfg_t *old = lookup(&routes, name ? name : "");
    if (old && strcmp(old->hash, hash_of(v)) == 0) routecfg_ref(old);
    else old = NULL;
    pthread_mutex_unlock(&mu);
    if (old == NULL && (old = routecfg_parse(v, err, errlen)) == NULL) goto done;
    put(&new_routes, name, old);
  }
  json_array_foreach(json_object_get(root, "secrets"), i, v) {
    size_t n = 0;
    unsigned char *val = b64_decode(json_string_value(json_object_get(v, "value")), &n);
    const char *name = json_string_value(json_object_get(v, "name"));
    if (val == NULL || name == NULL) {
      free(val);
      snprintf(err, errlen, "secret %s: no name or a value that is not base64", name ? name : "?");
      goto done;
    }
    new_secrets = realloc(new_secrets, (nnew_secrets + 1) * sizeof(secret_t));
    if (new_secrets == NULL) abort();
    secret_t *s = &new_secrets[nnew_secrets++];
    s->name = strdup(name);
    buf_init(&s->value);
    buf_append(&s->value, val, n);
    free(val);
  }
  /* listeners: a changed one gets a new chain (an LDS update re-creates
   * the whole HCM, an inline golang config included); a new address
   * binds a new socket */
  json_array_foreach(json_object_get(root, "listeners"), i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    const char *addr = json_string_value(json_object_get(v, "address"));
    if (name == NULL || addr == NULL) {
      snprintf(err, errlen, "listener without a name or address");
      goto done;
    }
    plans = realloc(plans, (nplans + 1) * sizeof(lplan_t));
    if (plans == NULL) abort();
    lplan_t *p = &plans[nplans];
    memset(p, 0, sizeof(*p));
    pthread_mutex_lock(&mu);
    p->old = lookup(&listeners, name);
    int same_chain = p->old && p->old->chain && strcmp(p->old->chain->hash, hash_of(v)) == 0;
    if (same_chain) {
      p->chain = p->old->chain;
      chain_ref(p->chain);
    }
    int same_addr = p->old && strcmp(p->old->want, addr) == 0;
    pthread_mutex_unlock(&mu);
    nplans++;
    if (p->chain == NULL) {
      fconfig_t *g = NULL;
      json_t *gi = json_object_get(json_object_get(v, "golang"), "inline");
      if (gi) {
        snprintf(label, sizeof(label), "listener %s", name);
        if ((g = build_golang(gi, label, err, errlen)) == NULL) goto done;
      }
      if ((p->chain = chain_parse(v, g, err, errlen)) == NULL) goto done;
    }
    if (same_addr) {
      p->l = p->old;
    } else {
      if ((p->l = listener_bind(name, addr, err, errlen)) == NULL) goto done;
      p->fresh = 1;
    }
  }

  /* the swap: everything built, nothing can fail from here on */
  chain_t **drain = NULL;
  size_t ndrain = 0;
  listener_t **stop = NULL;
  size_t nstop = 0;
  table_t new_listeners = {0};
  pthread_mutex_lock(&mu);
  for (size_t k = 0; k < nplans; k++) {
    lplan_t *p = &plans[k];
    chain_t *prev = p->l->chain;
    p->l->chain = p->chain;
    p->chain = NULL;
    if (prev != NULL && prev != p->l->chain) push_ptr((void ***)&drain, &ndrain, prev);
    else if (prev != NULL) chain_unref(prev);
    if (p->fresh && p->old) {
      /* the old socket's connections drain; it stops accepting */
      if (p->old->chain) push_ptr((void ***)&drain, &ndrain, p->old->chain);
      p->old->chain = NULL;
      push_ptr((void ***)&stop, &nstop, p->old);
    }
    put(&new_listeners, p->l->name, p->l);
  }
  for (size_t k = 0; k < listeners.n; k++) {
    listener_t *l = listeners.e[k].obj;
    if (lookup(&new_listeners, l->name) != NULL) continue;
    if (l->chain) push_ptr((void ***)&drain, &ndrain, l->chain);
    l->chain = NULL;
    push_ptr((void ***)&stop, &nstop, l);
  }
  table_t old_routes = routes, old_clusters = clusters, old_ecds = ecds, old_listeners = listeners;
  secret_t *old_secrets = secrets;
  size_t nold_secrets = nsecrets;
  routes = new_routes;
  clusters = new_clusters;
  ecds = new_ecds;
  listeners = new_listeners;
  secrets = new_secrets;
  nsecrets = nnew_secrets;
  pthread_mutex_unlock(&mu);
  memset(&new_routes, 0, sizeof(new_routes));
  memset(&new_clusters, 0, sizeof(new_clusters));
  memset(&new_ecds, 0, sizeof(new_ecds));
  new_secrets = NULL;
  nnew_secrets = 0;
  for (size_t k = 0; k < nplans; k++)
    if (plans[k].fresh) listener_start(plans[k].l);
  for (size_t k = 0; k < nstop; k++) listener_stop(stop[k]);
  for (size_t k = 0; k < ndrain; k++) {
    listener_drain_chain(drain[k]);
    chain_unref(drain[k]);
  }
  free(drain);
  free(stop);
  /* old resources die here (the main thread), or with the last stream
   * that holds them (a worker) */
  table_free(&old_routes, unref_route);
  table_free(&old_clusters, unref_cluster);
  table_free(&old_ecds, unref_fconfig);
  table_free(&old_listeners, NULL);
  free_secrets(old_secrets, nold_secrets);
  nplans = 0;
  rc = 0;
done:
  for (size_t k = 0; k < nplans; k++) {
    chain_unref(plans[k].chain);
    if (plans[k].fresh) listener_stop(plans[k].l);
  }
  free(plans);
  table_free(&new_routes, unref_route);
  table_free(&new_clusters, unref_cluster);
  table_free(&new_ecds, unref_fconfig);
  free_secrets(new_secrets, nnew_secrets);
  json_decref(root);
  return rc;
}
