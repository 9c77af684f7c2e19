#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

atomic_int g_log_level = LOG_INFO;

static const char *const kNames[] = {"trace", "debug", "info", "warning", "error", "critical", "off"};

int log_level_parse(const char *s) {
  for (int i = 0; i <= LOG_OFF; i++)
    if (strcmp(s, kNames[i]) == 0) return i;
  if (strcmp(s, "warn") == 0) return LOG_WARN;
  return -1;
}

void hlog(int level, const char *fmt, ...) {
  if (level < atomic_load(&g_log_level) || level >= LOG_OFF) return;
  char line[2048];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof(line), "[%02d:%02d:%02d.%03ld][%s][envoyhost] ", tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000, kNames[level]);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof(line)) vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
  va_end(ap);
  /* one fputs per line: stdio locks the stream, so lines from Go threads and
   * workers do not interleave */
  fprintf(stderr, "%s\n", line);
}
