# syntax=docker/dockerfile:1
# Envoy contrib image with Inflow's Go filter at /usr/local/lib/inflow/inflow.so
# and the ADS bootstrap (the repository's envoy.yaml) at /etc/envoy/envoy.yaml.
# Build from the repository root (make images):
#   docker build -f build/envoy.Dockerfile -t ghcr.io/inflow-gateway/inflow-envoy:v0.1.0-envoy-v1.39.0 .
# The ARG defaults are build/versions.env's; build/check fails if they differ.
ARG ENVOY_VERSION=v1.39.0
ARG GO_VERSION=1.26.8

# Only the Go toolchain is taken from here: its Debian glibc (2.36) is newer
# than the Envoy image's and must not be what the .so links against.
FROM golang:${GO_VERSION}-bookworm AS go

# Build on the Envoy image itself (Ubuntu 22.04 in v1.39.0,
# distribution/docker/Dockerfile-envoy: glibc 2.35), so the .so needs no
# newer glibc than the one that will load it, by construction.
FROM envoyproxy/envoy:contrib-${ENVOY_VERSION} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:$PATH CGO_ENABLED=1 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
# The filter imports only filter/ packages.
COPY filter/ filter/
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -buildmode=c-shared -trimpath -o /out/inflow.so ./filter

FROM envoyproxy/envoy:contrib-${ENVOY_VERSION}
ARG ENVOY_VERSION
ARG INFLOW_VERSION=v0.1.0
LABEL org.opencontainers.image.title="inflow-envoy" \
      org.opencontainers.image.description="Envoy contrib ${ENVOY_VERSION} with the Inflow Go filter" \
      org.opencontainers.image.source="https://github.com/inflow-gateway/inflow" \
      org.opencontainers.image.version="${INFLOW_VERSION}" \
      io.inflow.envoy-version="${ENVOY_VERSION}"
COPY --from=build --chmod=644 /out/inflow.so /usr/local/lib/inflow/inflow.so
COPY --chmod=644 envoy.yaml /etc/envoy/envoy.yaml
# Non-root by default: the image's entrypoint then execs envoy directly
# (it only switches user when started as root). 65532 is the uid Envoy
# Gateway runs its proxies as.
USER 65532:65532
EXPOSE 10000
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml"]
