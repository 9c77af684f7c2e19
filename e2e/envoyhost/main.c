/* envoyhost: a test harness that plays Envoy v1.39.0's side of the golang
 * HTTP filter C ABI, in front of real upstreams. Configured over xDS (the
 * companion pushes what the control plane sends), or from flags for
 * unit-level tests. See README.md. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "b64.h"
#include "dso.h"
#include "host.h"
#include "listener.h"
#include "log.h"
#include "pluginconfig.h"
#include "registry.h"
#include "worker.h"

static const char kUsage[] =
    "usage: envoyhost serve --library FILE.so --admin IP:PORT [--concurrency N] [--bind-listeners IP]\n"
    "                       [--listener-address NAME=IP:PORT]...\n"
    "                       [--drain-time-s SECONDS] [--log-level trace|debug|info|warning|error|critical|off]\n"
    "  xDS mode: listeners, routes, clusters and filter configs arrive by POST /envoyhost/config\n"
    "  (the xDS client, e2e/hostxds: harness.StartXDSHost or e2e/cmd/envoyhost-xds, pushes what the\n  control plane serves).\n"
    "  static mode (unit-level tests), one listener and one route to an ORIGINAL_DST cluster:\n"
    "       add --plugin-name NAME --plugin-config FILE.json --listen IP:PORT [--default-upstream IP:PORT]\n"
    "           [--buffer-limit BYTES] [--upstream-timeout SECONDS] [--route-plugin-config FILE.json]\n"
    "           [--original-dst-header NAME] [--original-dst-metadata NAMESPACE/KEY]\n"
    "Port 0 picks a free port; bound addresses are printed on stdout as\n"
    "  LISTEN <listener> ip:port\n  ADMIN ip:port\n";

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

static void die(const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "envoyhost: ");
  fprintf(stderr, fmt, a, b);
  fprintf(stderr, "\n");
  exit(1);
}

typedef struct static_opts {
  const char *plugin_name, *plugin_config, *route_config, *listen, *default_upstream;
  const char *odst_header, *odst_metadata;
  long buffer_limit, upstream_timeout_s;
} static_opts_t;

static json_t *any_b64(const char *path) {
  char err[512];
  buf_t any;
  buf_init(&any);
  if (plugin_config_from_json_file(path, &any, err, sizeof(err)) != 0) die("%s%s", err, "");
  char *enc = b64_encode(any.data, any.len);
  buf_free(&any);
  json_t *s = json_string(enc);
  free(enc);
  return s;
}

/* The static mode as a snapshot: one listener with the golang filter
 * inline, one catch-all route to an ORIGINAL_DST cluster that reads what
 * Inflow writes (header and envoy.lb metadata), the default upstream
 * standing in for ORIGINAL_DST's restored local address. */
static json_t *static_snapshot(const static_opts_t *o) {
  json_t *route = json_pack("{s:s, s:{s:s}, s:{s:s, s:s}}", "name", "static", "match", "prefix", "/", "route",
                            "cluster", "static", "timeout", "0s");
  if (o->route_config)
    json_object_set_new(route, "golang_per_route",
                        json_pack("{s:s, s:o}", "plugin", o->plugin_name, "config", any_b64(o->route_config)));
  json_t *rc = json_pack("{s:s, s:s, s:[{s:s, s:[s], s:[o]}]}", "name", "static", "hash", "static", "virtual_hosts",
                         "name", "static", "domains", "*", "routes", route);
  char idle[32];
  snprintf(idle, sizeof(idle), "%lds", o->upstream_timeout_s);
  json_t *hcm = json_pack("{s:s, s:o, s:s}", "stat_prefix", "static", "route_config", rc, "stream_idle_timeout", idle);
  json_t *golang = json_pack("{s:{s:s, s:o, s:s}}", "inline", "plugin_name", o->plugin_name, "plugin_config",
                             any_b64(o->plugin_config), "hash", "static");
  json_t *lis = json_pack("{s:s, s:s, s:s, s:I, s:o, s:o}", "name", "static", "address", o->listen, "hash", "static",
                          "per_connection_buffer_limit_bytes", (json_int_t)o->buffer_limit, "hcm", hcm, "golang", golang);
  json_t *odst = json_object();
  if (o->odst_header) {
    json_object_set_new(odst, "use_http_header", json_true());
    json_object_set_new(odst, "http_header_name", json_string(o->odst_header));
  }
  if (o->odst_metadata) {
    const char *slash = strchr(o->odst_metadata, '/');
    if (slash == NULL) die("--original-dst-metadata %s is not NAMESPACE/KEY%s", o->odst_metadata, "");
    char *ns = strndup(o->odst_metadata, (size_t)(slash - o->odst_metadata));
    json_object_set_new(odst, "metadata_key", json_pack("{s:s, s:[{s:s}]}", "key", ns, "path", "key", slash + 1));
    free(ns);
  }
  json_t *cluster = json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", "static", "hash", "static", "type",
                              "ORIGINAL_DST", "lb_policy", "CLUSTER_PROVIDED", "original_dst", odst);
  if (o->default_upstream) json_object_set_new(cluster, "default_host", json_string(o->default_upstream));
  return json_pack("{s:[o], s:[o]}", "listeners", lis, "clusters", cluster);
}

int main(int argc, char **argv) {
  const char *admin_addr = "127.0.0.1:0";
  static_opts_t so = {.buffer_limit = 1024 * 1024, .upstream_timeout_s = 300};
  long concurrency = sysconf(_SC_NPROCESSORS_ONLN); /* Envoy's default --concurrency */
  if (argc < 2 || strcmp(argv[1], "serve") != 0) {
    fputs(kUsage, stderr);
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) die("missing value for %s%s", k, "");
    i++;
    if (strcmp(k, "--library") == 0) g_cfg.library = v;
    else if (strcmp(k, "--admin") == 0) admin_addr = v;
    else if (strcmp(k, "--concurrency") == 0) concurrency = atol(v);
    else if (strcmp(k, "--bind-listeners") == 0) g_cfg.bind_listeners = v;
    else if (strcmp(k, "--listener-address") == 0) {
      const char *eq = strchr(v, '=');
      if (eq == NULL) die("--listener-address %s is not NAME=IP:PORT%s", v, "");
      g_cfg.pin_names = realloc(g_cfg.pin_names, (g_cfg.npins + 1) * sizeof(char *));
      g_cfg.pin_addrs = realloc(g_cfg.pin_addrs, (g_cfg.npins + 1) * sizeof(char *));
      if (g_cfg.pin_names == NULL || g_cfg.pin_addrs == NULL) abort();
      g_cfg.pin_names[g_cfg.npins] = strndup(v, (size_t)(eq - v));
      g_cfg.pin_addrs[g_cfg.npins++] = eq + 1;
    }
    else if (strcmp(k, "--drain-time-s") == 0) g_drain_time_ms = (long)(atof(v) * 1000);
    else if (strcmp(k, "--plugin-name") == 0) so.plugin_name = v;
    else if (strcmp(k, "--plugin-config") == 0) so.plugin_config = v;
    else if (strcmp(k, "--route-plugin-config") == 0) so.route_config = v;
    else if (strcmp(k, "--listen") == 0) so.listen = v;
    else if (strcmp(k, "--default-upstream") == 0) so.default_upstream = v;
    else if (strcmp(k, "--buffer-limit") == 0) so.buffer_limit = atol(v);
    else if (strcmp(k, "--original-dst-header") == 0) so.odst_header = v;
    else if (strcmp(k, "--original-dst-metadata") == 0) so.odst_metadata = v;
    else if (strcmp(k, "--upstream-timeout") == 0) so.upstream_timeout_s = atol(v);
    else if (strcmp(k, "--log-level") == 0) {
      int l = log_level_parse(v);
      if (l < 0) die("bad --log-level %s%s", v, "");
      atomic_store(&g_log_level, l);
    } else die("unknown flag %s%s", k, "");
  }
  int static_mode = so.plugin_name || so.plugin_config || so.listen;
  if (!g_cfg.library || (static_mode && (!so.plugin_name || !so.plugin_config || !so.listen))) {
    fputs(kUsage, stderr);
    return 2;
  }
  if (concurrency < 1 || concurrency > 256) die("--concurrency must be 1..256%s%s", "", "");
  g_cfg.concurrency = (uint32_t)concurrency;
  if (install_signals() != 0) die("cannot install signal handlers: %s%s", strerror(errno), "");

  char err[1024];
  if (dso_load(g_cfg.library, err, sizeof(err)) != 0) die("%s%s", err, "");
  g_workers = calloc((size_t)concurrency, sizeof(worker_t));
  if (g_workers == NULL) abort();
  for (long i = 0; i < concurrency; i++) {
    if (worker_init(&g_workers[i], (uint32_t)i) != 0) die("cannot create worker: %s%s", strerror(errno), "");
    if (worker_start(&g_workers[i]) != 0) die("cannot start worker thread%s%s", "", "");
  }
  if (static_mode) {
    json_t *snap = static_snapshot(&so);
    char *text = json_dumps(snap, JSON_COMPACT);
    json_decref(snap);
    if (registry_apply(text, strlen(text), err, sizeof(err)) != 0) die("%s (listener refused)%s", err, "");
    free(text);
  }
  char admin_bound[80];
  if (admin_start(admin_addr, admin_bound, sizeof(admin_bound)) != 0)
    die("cannot start admin on %s: %s", admin_addr, strerror(errno));
  hlog(LOG_INFO, "library %s loaded, %ld workers, %s mode", g_cfg.library, concurrency, static_mode ? "static" : "xDS");
  printf("ADMIN %s\n", admin_bound);
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
