#include "respflags.h"

#include <stdio.h>
#include <string.h>

static const char *const kShort[RF_COUNT] = {
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR", "UDO"};

static const char *const kLong[RF_COUNT] = {
    "FailedLocalHealthCheck", "NoHealthyUpstream", "UpstreamRequestTimeout", "LocalReset",
    "UpstreamRemoteReset", "UpstreamConnectionFailure", "UpstreamConnectionTermination", "UpstreamOverflow",
    "NoRouteFound", "DelayInjected", "FaultInjected", "RateLimited", "UnauthorizedExternalService",
    "RateLimitServiceError", "DownstreamConnectionTermination", "UpstreamRetryLimitExceeded",
    "StreamIdleTimeout", "InvalidEnvoyRequestHeaders", "DownstreamProtocolError",
    "UpstreamMaxStreamDurationReached", "ResponseFromCacheFilter", "NoFilterConfigFound", "DurationTimeout",
    "UpstreamProtocolError", "NoClusterFound", "OverloadManagerTerminated", "DnsResolutionFailed",
    "DropOverload", "DownstreamRemoteReset", "UnconditionalDropOverload"};

int respflag_parse(const char *name) {
  for (int i = 0; i < RF_COUNT; i++)
    if (strcmp(kShort[i], name) == 0) return i;
  return -1;
}

void respflags_string(uint64_t flags, int long_names, char *out, size_t outlen) {
  size_t n = 0;
  out[0] = 0;
  for (int i = 0; i < RF_COUNT; i++) {
    if (!(flags & RF_BIT(i))) continue;
    int w = snprintf(out + n, outlen - n, "%s%s", n ? "," : "", long_names ? kLong[i] : kShort[i]);
    if (w < 0 || (size_t)w >= outlen - n) break;
    n += (size_t)w;
  }
  if (n == 0) snprintf(out, outlen, "-");
}
