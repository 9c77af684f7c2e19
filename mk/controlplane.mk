# inflow-controlplane: the xDS (ADS) server that configures Inflow's Envoys.
CONTROLPLANE_CONFIG ?= controlplane/example.yaml

build-controlplane: ## build the xDS control plane: build/out/inflow-controlplane
	@mkdir -p $(OUT)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(OUT)/inflow-controlplane ./controlplane/cmd/inflow-controlplane

# The control plane never reads API keys: Envoy does, from its secret files.
run-controlplane: build-controlplane ## serve CONTROLPLANE_CONFIG (default controlplane/example.yaml) on :18000, admin :18001 (plain-text xDS)
	$(OUT)/inflow-controlplane --config $(CONTROLPLANE_CONFIG)

print-controlplane: build-controlplane ## print the xDS resources generated from CONTROLPLANE_CONFIG
	@$(OUT)/inflow-controlplane --config $(CONTROLPLANE_CONFIG) --print

test-controlplane: ## translator goldens, file source, ADS over gRPC, envoy.yaml (make update-goldens regenerates goldens)
	$(GO) test -count=1 $(GOTESTFLAGS) ./controlplane/...

.PHONY: build-controlplane run-controlplane print-controlplane test-controlplane
