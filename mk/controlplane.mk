# inflow-controlplane: the xDS (ADS) server that configures Inflow's Envoys.
CONTROLPLANE_CONFIG ?= controlplane/example.yaml

build-controlplane: ## build the xDS control plane: build/out/inflow-controlplane
	@mkdir -p $(OUT)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(OUT)/inflow-controlplane ./controlplane/cmd/inflow-controlplane

# The example config reads OPENAI_API_KEY; a placeholder lets it start
# without one (requests to that backend then get 401 from OpenAI).
run-controlplane: build-controlplane ## serve CONTROLPLANE_CONFIG (default controlplane/example.yaml) on :18000, admin :18001
	OPENAI_API_KEY="$${OPENAI_API_KEY:-sk-placeholder}" $(OUT)/inflow-controlplane --config $(CONTROLPLANE_CONFIG)

print-controlplane: build-controlplane ## print the xDS resources generated from CONTROLPLANE_CONFIG (keys redacted)
	@OPENAI_API_KEY="$${OPENAI_API_KEY:-sk-placeholder}" $(OUT)/inflow-controlplane --config $(CONTROLPLANE_CONFIG) --print

test-controlplane: ## translator goldens, file source, ADS over gRPC, envoy.yaml (make update-goldens regenerates goldens)
	$(GO) test -count=1 $(GOTESTFLAGS) ./controlplane/...

.PHONY: build-controlplane run-controlplane print-controlplane test-controlplane
