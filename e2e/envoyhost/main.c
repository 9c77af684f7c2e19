/* envoyhost: a test harness that plays Envoy v1.39.0's side of the golang
 * HTTP filter C ABI, in front of real upstreams. See README.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/http.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin.h"
#include "dso.h"
#include "host.h"
#include "log.h"
#include "pluginconfig.h"
#include "stats.h"
#include "stream.h"
#include "worker.h"

static const char kUsage[] =
    "usage: envoyhost serve --library FILE.so --plugin-name NAME --plugin-config FILE.json\n"
    "                       --listen IP:PORT [--admin IP:PORT] [--concurrency N]\n"
    "                       [--default-upstream IP:PORT] [--buffer-limit BYTES]\n"
    "                       [--log-level trace|debug|info|warning|error|critical|off]\n"
    "                       [--read-chunk BYTES] [--upstream-timeout SECONDS]\n"
    "                       [--route-plugin-config FILE.json]\n"
    "Port 0 picks a free port; the bound addresses are printed on stdout as\n"
    "  LISTEN ip:port\n  ADMIN ip:port\n";

static int signal_pipe[2];

static void on_signal(int sig) {
  unsigned char c = (unsigned char)sig;
  ssize_t r = write(signal_pipe[1], &c, 1); /* async-signal-safe */
  (void)r;
}

static int install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN; /* writes to closed sockets must fail with EPIPE, not kill us */
  if (sigaction(SIGPIPE, &sa, NULL) != 0) return -1;
  if (pipe(signal_pipe) != 0) return -1;
  sa.sa_handler = on_signal;
  /* SA_ONSTACK: the handler may run on a Go thread, which only has a small
   * alternate signal stack the runtime set up */
  sa.sa_flags = SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  return sigaction(SIGINT, &sa, NULL) == 0 && sigaction(SIGTERM, &sa, NULL) == 0 ? 0 : -1;
}

/* Binds "ip:port" (IPv4) and returns the listening fd; out gets the bound address. */
static int bind_listen(const char *addr, char *out, size_t outlen) {
  char host[64];
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) return -1;
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = 0;
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) return -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, 1024) != 0)
    return -1;
  socklen_t sl = sizeof(sin);
  getsockname(fd, (struct sockaddr *)&sin, &sl);
  snprintf(out, outlen, "%s:%u", host, ntohs(sin.sin_port));
  return fd;
}

static void die(const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "envoyhost: ");
  fprintf(stderr, fmt, a, b);
  fprintf(stderr, "\n");
  exit(1);
}

/* The single route's typed_per_filter_config (ConfigsPerRoute): parsed with
 * is_route_config=1 and merged over the listener's config, as
 * RoutePluginConfig::getMergedConfigId does; requests then use the merged id. */
static void merge_route_config(const char *path, const char *plugin_name) {
  char err[512];
  buf_t any;
  buf_init(&any);
  if (plugin_config_from_json_file(path, &any, err, sizeof(err)) != 0) die("%s%s", err, "");
  httpConfig rc; /* RoutePluginConfig::config_: owned by the host, never given to Go's GC */
  memset(&rc, 0, sizeof(rc));
  rc.plugin_name_ptr = (uint64_t)(uintptr_t)plugin_name;
  rc.plugin_name_len = strlen(plugin_name);
  rc.config_ptr = (uint64_t)(uintptr_t)any.data;
  rc.config_len = any.len;
  rc.is_route_config = 1;
  rc.concurrency = g_cfg.concurrency;
  uint64_t child = g_dso.new_config(&rc);
  buf_free(&any);
  if (child == 0) die("golang filter failed to parse plugin config: %s (route config %s)", plugin_name, path);
  uint64_t merged = g_dso.merge_config(rc.plugin_name_ptr, rc.plugin_name_len, g_cfg.config_id, child);
  hlog(LOG_INFO, "route config %s: id %llu merged over %llu into %llu", path, (unsigned long long)child,
       (unsigned long long)g_cfg.config_id, (unsigned long long)merged);
  g_cfg.config_id = merged;
}

int main(int argc, char **argv) {
  const char *library = NULL, *plugin_name = NULL, *plugin_config = NULL, *listen_addr = NULL,
             *admin_addr = "127.0.0.1:0", *route_config = NULL;
  long concurrency = sysconf(_SC_NPROCESSORS_ONLN); /* Envoy's default --concurrency */
  g_cfg.buffer_limit = 1024 * 1024; /* Envoy's default per_connection_buffer_limit_bytes */
  g_cfg.read_chunk = 16384;
  g_cfg.upstream_timeout_s = 300;
  if (argc < 2 || strcmp(argv[1], "serve") != 0) {
    fputs(kUsage, stderr);
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) die("missing value for %s%s", k, "");
    i++;
    if (strcmp(k, "--library") == 0) library = v;
    else if (strcmp(k, "--plugin-name") == 0) plugin_name = v;
    else if (strcmp(k, "--plugin-config") == 0) plugin_config = v;
    else if (strcmp(k, "--route-plugin-config") == 0) route_config = v;
    else if (strcmp(k, "--listen") == 0) listen_addr = v;
    else if (strcmp(k, "--admin") == 0) admin_addr = v;
    else if (strcmp(k, "--concurrency") == 0) concurrency = atol(v);
    else if (strcmp(k, "--default-upstream") == 0) g_cfg.default_upstream = v;
    else if (strcmp(k, "--buffer-limit") == 0) g_cfg.buffer_limit = (uint32_t)strtoul(v, NULL, 10);
    else if (strcmp(k, "--read-chunk") == 0) g_cfg.read_chunk = (size_t)strtoul(v, NULL, 10);
    else if (strcmp(k, "--upstream-timeout") == 0) g_cfg.upstream_timeout_s = atoi(v);
    else if (strcmp(k, "--log-level") == 0) {
      int l = log_level_parse(v);
      if (l < 0) die("bad --log-level %s%s", v, "");
      atomic_store(&g_log_level, l);
    } else die("unknown flag %s%s", k, "");
  }
  if (!library || !plugin_name || !plugin_config || !listen_addr) {
    fputs(kUsage, stderr);
    return 2;
  }
  if (concurrency < 1 || concurrency > 256) die("--concurrency must be 1..256%s%s", "", "");
  if (g_cfg.read_chunk == 0) g_cfg.read_chunk = 16384;
  if (install_signals() != 0) die("cannot install signal handlers: %s%s", strerror(errno), "");

  char err[512];
  buf_t any;
  buf_init(&any);
  if (plugin_config_from_json_file(plugin_config, &any, err, sizeof(err)) != 0) die("%s%s", err, "");

  static char listen_buf[80], admin_buf[80];
  int lfd = bind_listen(listen_addr, listen_buf, sizeof(listen_buf));
  if (lfd < 0) die("cannot listen on %s: %s", listen_addr, strerror(errno));
  int afd = bind_listen(admin_addr, admin_buf, sizeof(admin_buf));
  if (afd < 0) die("cannot listen on %s: %s", admin_addr, strerror(errno));
  g_cfg.listen_addr = listen_buf;

  if (dso_load(library, err, sizeof(err)) != 0) die("%s%s", err, "");

  /* FilterConfig::newGoPluginConfig: Go keeps this struct (freed by its GC
   * through envoyGoConfigHttpFinalize); the config bytes only live for the call. */
  atomic_store(&g_filter_config_alive, 1);
  host_http_config_t *hc = calloc(1, sizeof(*hc));
  if (hc == NULL) abort();
  g_cfg.plugin_name = plugin_name;
  g_cfg.plugin_name_len = strlen(plugin_name);
  g_cfg.concurrency = (uint32_t)concurrency;
  hc->base.plugin_name_ptr = (uint64_t)(uintptr_t)plugin_name;
  hc->base.plugin_name_len = g_cfg.plugin_name_len;
  hc->base.config_ptr = (uint64_t)(uintptr_t)any.data;
  hc->base.config_len = any.len;
  hc->base.is_route_config = 0;
  hc->base.concurrency = g_cfg.concurrency;
  g_cfg.config_id = g_dso.new_config(&hc->base);
  buf_free(&any);
  if (g_cfg.config_id == 0)
    die("golang filter failed to parse plugin config: %s %s (listener refused)", plugin_name, library);
  if (route_config != NULL) merge_route_config(route_config, plugin_name);

  worker_t *workers = calloc((size_t)concurrency, sizeof(worker_t));
  if (workers == NULL) abort();
  for (long i = 0; i < concurrency; i++) {
    worker_t *w = &workers[i];
    if (worker_init(w, (uint32_t)i) != 0) die("cannot create worker: %s%s", strerror(errno), "");
    w->http = evhttp_new(w->base);
    /* every worker accepts on the same socket, as Envoy workers share a listener */
    if (w->http == NULL || evhttp_accept_socket(w->http, lfd) != 0) die("cannot start worker listener%s%s", "", "");
    evhttp_set_gencb(w->http, stream_on_request, w);
    evhttp_set_default_content_type(w->http, NULL);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(w->http, 256 * 1024 * 1024);
    /* evhttp's 50 s default would cut LLM requests that think for longer */
    evhttp_set_timeout(w->http, g_cfg.upstream_timeout_s);
    if (worker_start(w) != 0) die("cannot start worker thread%s%s", "", "");
  }
  if (admin_start(afd) != 0) die("cannot start admin%s%s", "", "");
  hlog(LOG_INFO, "plugin %s loaded from %s, config id %llu, %ld workers", plugin_name, library,
       (unsigned long long)g_cfg.config_id, concurrency);
  printf("LISTEN %s\nADMIN %s\n", listen_buf, admin_buf);
  fflush(stdout);

  unsigned char sig = 0;
  while (read(signal_pipe[0], &sig, 1) < 0 && errno == EINTR) {
  }
  hlog(LOG_INFO, "signal %d: exiting", sig);
  fflush(stderr);
  /* The Go runtime cannot be unloaded and its threads keep running: leave
   * without running atexit handlers under them. */
  _exit(0);
}
