#include "dso.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

dso_t g_dso;

int dso_load(const char *path, char *err, size_t errlen) {
  /* Envoy: dlopen(dso_name.c_str(), RTLD_LAZY) */
  void *h = dlopen(path, RTLD_LAZY);
  if (h == NULL) {
    snprintf(err, errlen, "cannot load %s: %s", path, dlerror());
    return -1;
  }
  struct {
    const char *name;
    void **slot;
  } syms[] = {
      {"envoyGoFilterNewHttpPluginConfig", (void **)&g_dso.new_config},
      {"envoyGoFilterMergeHttpPluginConfig", (void **)&g_dso.merge_config},
      {"envoyGoFilterDestroyHttpPluginConfig", (void **)&g_dso.destroy_config},
      {"envoyGoFilterOnHttpHeader", (void **)&g_dso.on_header},
      {"envoyGoFilterOnHttpData", (void **)&g_dso.on_data},
      {"envoyGoFilterOnHttpLog", (void **)&g_dso.on_log},
      {"envoyGoFilterOnHttpStreamComplete", (void **)&g_dso.on_stream_complete},
      {"envoyGoFilterOnHttpDestroy", (void **)&g_dso.on_destroy},
      {"envoyGoRequestSemaDec", (void **)&g_dso.sema_dec},
      {"envoyGoFilterCleanUp", (void **)&g_dso.cleanup},
  };
  for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
    void *p = dlsym(h, syms[i].name);
    if (p == NULL) {
      /* Envoy refuses the library when any export is missing */
      snprintf(err, errlen, "%s: missing export %s", path, syms[i].name);
      return -1;
    }
    memcpy(syms[i].slot, &p, sizeof(p));
  }
  g_dso.handle = h;
  return 0;
}
