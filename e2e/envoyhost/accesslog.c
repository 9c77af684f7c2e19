#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static const char kFileLogger[] = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";

/* Envoy's default access log format (docs: access_log/usage.rst "Default Format String"). */
static const char kDefaultFormat[] =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "
    "%RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "
    "\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" "
    "\"%UPSTREAM_HOST%\"\n";

/* Files are opened once per path and shared, like Envoy's AccessLogManager. */
typedef struct logfile {
  char *path;
  int fd;
  pthread_mutex_t mu;
  struct logfile *next;
} logfile_t;

static pthread_mutex_t files_mu = PTHREAD_MUTEX_INITIALIZER;
static logfile_t *files;

static logfile_t *open_file(const char *path, char *err, size_t errlen) {
  pthread_mutex_lock(&files_mu);
  logfile_t *f;
  for (f = files; f != NULL; f = f->next)
    if (strcmp(f->path, path) == 0) break;
  if (f == NULL) {
    int fd = strcmp(path, "/dev/stdout") == 0 ? STDOUT_FILENO
             : strcmp(path, "/dev/stderr") == 0 ? STDERR_FILENO
                                                : open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      snprintf(err, errlen, "access log %s: %s", path, strerror(errno));
      pthread_mutex_unlock(&files_mu);
      return NULL;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) abort();
    f->path = strdup(path);
    f->fd = fd;
    pthread_mutex_init(&f->mu, NULL);
    f->next = files;
    files = f;
  }
  pthread_mutex_unlock(&files_mu);
  return f;
}

struct accesslog {
  logfile_t *file;
  fmt_t *fmt;
  alfilter_t *filter;
};

accesslog_t *accesslog_parse(json_t *j, char *err, size_t errlen) {
  json_t *tc = json_object_get(j, "typed_config");
  const char *type = json_string_value(json_object_get(tc, "@type"));
  if (type == NULL || strcmp(type, kFileLogger) != 0) {
    snprintf(err, errlen, "access logger %s (%s) is not modelled by envoyhost: only envoy.access_loggers.file",
             json_string_value(json_object_get(j, "name")), type ? type : "no typed_config");
    return NULL;
  }
  const char *k;
  json_t *v;
  json_object_foreach(tc, k, v) {
    if (strcmp(k, "@type") != 0 && strcmp(k, "path") != 0 && strcmp(k, "log_format") != 0 &&
        strcmp(k, "format") != 0 && strcmp(k, "json_format") != 0) {
      snprintf(err, errlen, "FileAccessLog.%s is not modelled by envoyhost", k);
      return NULL;
    }
  }
  accesslog_t *l = calloc(1, sizeof(*l));
  if (l == NULL) abort();
  const char *path = json_string_value(json_object_get(tc, "path"));
  if (path == NULL || (l->file = open_file(path, err, errlen)) == NULL) {
    if (path == NULL) snprintf(err, errlen, "FileAccessLog without a path");
    accesslog_free(l);
    return NULL;
  }
  json_t *lf = json_object_get(tc, "log_format");
  json_t *jf = lf ? json_object_get(lf, "json_format") : json_object_get(tc, "json_format");
  const char *text = lf ? json_string_value(json_object_get(lf, "text_format"))
                        : json_string_value(json_object_get(tc, "format"));
  json_t *tfs = lf ? json_object_get(lf, "text_format_source") : NULL;
  if (tfs) text = json_string_value(json_object_get(tfs, "inline_string"));
  if (lf) {
    json_object_foreach(lf, k, v) {
      if (strcmp(k, "text_format") != 0 && strcmp(k, "json_format") != 0 && strcmp(k, "text_format_source") != 0 &&
          strcmp(k, "omit_empty_values") != 0) {
        snprintf(err, errlen, "FileAccessLog.log_format.%s is not modelled by envoyhost", k);
        accesslog_free(l);
        return NULL;
      }
    }
  }
  int omit = lf && json_is_true(json_object_get(lf, "omit_empty_values"));
  if (jf) l->fmt = fmt_parse_json(jf, omit, err, errlen);
  else l->fmt = fmt_parse_text(text && text[0] ? text : kDefaultFormat, err, errlen);
  if (l->fmt == NULL) {
    accesslog_free(l);
    return NULL;
  }
  if (!jf) fmt_set_omit_empty(l->fmt, omit);
  json_t *flt = json_object_get(j, "filter");
  if (flt && (l->filter = alfilter_parse(flt, err, errlen)) == NULL) {
    accesslog_free(l);
    return NULL;
  }
  return l;
}

void accesslog_free(accesslog_t *l) {
  if (l == NULL) return;
  fmt_free(l->fmt);
  alfilter_free(l->filter);
  free(l);
}

void accesslog_write(const accesslog_t *l, const fmt_ctx_t *c) {
  if (l->filter && !alfilter_eval(l->filter, c)) return;
  buf_t line;
  buf_init(&line);
  fmt_render(l->fmt, c, &line);
  pthread_mutex_lock(&l->file->mu);
  size_t off = 0;
  while (off < line.len) {
    ssize_t w = write(l->file->fd, line.data + off, line.len - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      hlog(LOG_WARN, "access log %s: %s", l->file->path, strerror(errno));
      break;
    }
    off += (size_t)w;
  }
  pthread_mutex_unlock(&l->file->mu);
  buf_free(&line);
}
