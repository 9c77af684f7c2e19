#ifndef ENVOYHOST_ADMIN_H
#define ENVOYHOST_ADMIN_H

/* Serves the admin endpoints on the bound listening socket fd. */
int admin_start(int fd);

#endif
