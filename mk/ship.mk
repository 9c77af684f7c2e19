# Shipping: container images, the compose demo, Kubernetes manifests, and the
# Go-side stand-in for the demo that runs without Docker (docs/deploy.md).
# Versions come from build/versions.env (included by the Makefile);
# build/check fails when anything disagrees.

ENVOY_IMAGE        ?= ghcr.io/inflow-gateway/inflow-envoy:$(INFLOW_VERSION)-envoy-$(ENVOY_VERSION)
CONTROLPLANE_IMAGE ?= ghcr.io/inflow-gateway/inflow-controlplane:$(INFLOW_VERSION)
DOCKER             ?= docker
COMPOSE            ?= $(DOCKER) compose -f e2e/docker-compose.yaml
DEMO_FLAGS         ?=
IMAGE_ARGS          = --build-arg ENVOY_VERSION=$(ENVOY_VERSION) --build-arg GO_VERSION=$(GO_VERSION) --build-arg INFLOW_VERSION=$(INFLOW_VERSION)

images: ## build the Envoy+filter and control-plane images (needs a Docker engine with BuildKit)
	DOCKER_BUILDKIT=1 $(DOCKER) build -f build/envoy.Dockerfile $(IMAGE_ARGS) -t $(ENVOY_IMAGE) .
	DOCKER_BUILDKIT=1 $(DOCKER) build -f build/controlplane.Dockerfile $(IMAGE_ARGS) -t $(CONTROLPLANE_IMAGE) .

demo: ## docker compose demo: Envoy on 127.0.0.1:8080, 3 llm-d simulators, the control plane (needs Docker)
	$(COMPOSE) up --build

# A cold build takes minutes on a small machine: say what is being built
# (go run would compile the runner in silence).
demo-local: ## the compose demo's config without Docker: simulators + control plane + inflow.so in the xDS-driven ABI host on 127.0.0.1:8080, following edits of e2e/demo/controlplane.yaml (DEMO_FLAGS=-smoke to check and exit)
	@echo "demo-local: building $(OUT)/inflow.so (the filter) and $(OUT)/envoyhost (the ABI host); the first build takes a few minutes"
	@$(MAKE) --no-print-directory build-filter build-host
	@echo "demo-local: building $(OUT)/inflow-demo (simulators, control plane, the host's xDS client)"
	@$(GO) build -o $(OUT)/inflow-demo ./e2e/cmd/inflow-demo
	@echo "demo-local: starting"
	@$(OUT)/inflow-demo $(DEMO_FLAGS)

# The separate module keeps Kubernetes, Envoy Gateway and compose-go out of
# the filter's go.mod. kubectl is optional: the tests run kustomize's own
# library, which is what `kubectl kustomize` runs.
check-artefacts: ## check Dockerfiles, compose demo, k8s manifests and versions (build/check module; kubectl kustomize too if installed)
	cd build/check && $(GO) vet ./... && $(GO) test -count=1 ./...
	@if command -v kubectl >/dev/null; then \
		for d in build/k8s build/k8s/envoy-gateway; do kubectl kustomize $$d >/dev/null && echo "kubectl kustomize $$d: ok" || exit 1; done; \
	else echo "kubectl not installed: skipped kubectl kustomize (the tests ran krusty)"; fi

.PHONY: images demo demo-local check-artefacts
