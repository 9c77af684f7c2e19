#ifndef ENVOYHOST_ADMIN_H
#define ENVOYHOST_ADMIN_H

#include <stddef.h>

/* Binds addr and serves the admin endpoints on their own thread:
 * /stats, /listeners, /ready, and POST /envoyhost/config (the xDS
 * companion's pushes). bound gets the address. */
int admin_start(const char *addr, char *bound, size_t boundlen);

#endif
