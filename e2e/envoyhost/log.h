/* Logging shared by the host and the Go filter's envoyGoFilterLog callback.
 * Levels are spdlog's, as the Go SDK expects: 0 trace .. 5 critical, 6 off. */
#ifndef ENVOYHOST_LOG_H
#define ENVOYHOST_LOG_H

#include <stdatomic.h>

enum { LOG_TRACE = 0, LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_CRITICAL, LOG_OFF };

extern atomic_int g_log_level;

int log_level_parse(const char *s);
void hlog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
