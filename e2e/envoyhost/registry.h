/* The host's current configuration, as Envoy's listener manager, cluster
 * manager, RDS and ECDS providers and SDS hold it. The xDS companion pushes a
 * complete snapshot (admin POST /envoyhost/config); it is applied as a whole
 * or refused. Resources whose hash did not change are kept (Envoy skips
 * identical updates), so unchanged filter configs are not parsed again and
 * unchanged listeners are not drained. */
#ifndef ENVOYHOST_REGISTRY_H
#define ENVOYHOST_REGISTRY_H

#include <stddef.h>

#include "buffer.h"
#include "cluster.h"
#include "fconfig.h"
#include "routecfg.h"

/* Runs on the admin thread (Envoy's main thread). 0, or -1 with err. */
int registry_apply(const char *json, size_t len, char *err, size_t errlen);

/* ref'd, or NULL when absent */
routecfg_t *registry_route(const char *name);
cluster_t *registry_cluster(const char *name);
fconfig_t *registry_ecds(const char *name);
/* copies the secret's value; 0 when absent */
int registry_secret(const char *name, buf_t *out);

struct listener;
struct chain;
/* The chain new connections of l get (ref'd), NULL once l was removed. */
struct chain *registry_listener_chain(struct listener *l);

/* "name::ip:port" per line, as Envoy's admin /listeners. */
void registry_listeners(buf_t *out);

#endif
