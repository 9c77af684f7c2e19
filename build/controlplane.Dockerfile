# syntax=docker/dockerfile:1
# inflow-controlplane: a static binary on distroless, non-root.
# Build from the repository root (make images):
#   docker build -f build/controlplane.Dockerfile -t ghcr.io/inflow-gateway/inflow-controlplane:v0.1.0 .
# The ARG default is build/versions.env's; build/check fails if it differs.
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
# The control plane imports controlplane/ and filter/ (the shared schema).
COPY controlplane/ controlplane/
COPY filter/ filter/
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/inflow-controlplane ./controlplane/cmd/inflow-controlplane

FROM gcr.io/distroless/static-debian12:nonroot
ARG INFLOW_VERSION=v0.1.0
LABEL org.opencontainers.image.title="inflow-controlplane" \
      org.opencontainers.image.source="https://github.com/inflow-gateway/inflow" \
      org.opencontainers.image.version="${INFLOW_VERSION}"
COPY --from=build /out/inflow-controlplane /usr/local/bin/inflow-controlplane
USER 65532:65532
# 18000: ADS (gRPC) for Envoy; 18001: /metrics, /healthz, /readyz.
EXPOSE 18000 18001
ENTRYPOINT ["/usr/local/bin/inflow-controlplane"]
CMD ["--config", "/etc/inflow/controlplane.yaml"]
