# Envoy Gateway mode: the real Envoy Gateway (built from the Go module proxy
# by its own module, build/envoygateway, so the product's go.mod stays
# small), Inflow's extension server, and the end-to-end test that runs them
# together without Docker (standalone mode, File provider). Cached per
# version under bin/ (gitignored): a cold build takes about 5 minutes and
# 239 MB (measured with empty build cache, niced, on the shared 2-core
# machine: 5 min 16 s), a warm one nothing.
EG_BIN := $(CURDIR)/bin/envoygateway/$(ENVOY_GATEWAY_VERSION)/envoy-gateway

# The e2e test finds the binary here; INFLOW_REQUIRE_ENVOY_GATEWAY turns a
# missing binary into a failure instead of a skip, so `make test` (and CI)
# always runs it.
export INFLOW_ENVOY_GATEWAY := $(EG_BIN)
EG_TEST_ENV := INFLOW_REQUIRE_ENVOY_GATEWAY=1

envoy-gateway: $(EG_BIN) ## build the real Envoy Gateway into bin/envoygateway/<version> (cold: ~5 min)

# No prerequisites: the folder is keyed on the version (build/check holds
# build/envoygateway/go.mod to it). A scratch folder first, so an
# interrupted build leaves nothing that looks finished.
$(EG_BIN):
	@mkdir -p $(dir $@).tmp
	cd build/envoygateway && nice $(GO) build -trimpath -o $(dir $@).tmp/envoy-gateway github.com/envoyproxy/gateway/cmd/envoy-gateway
	mkdir -p $(dir $@)
	mv $(dir $@).tmp/envoy-gateway $@
	rmdir $(dir $@).tmp

e2e-envoygateway: envoy-gateway kube-assets build-filter build-host ## Envoy Gateway mode end to end: real Envoy Gateway + Inflow's extension server (+ the AIGatewayRoute controller on envtest)
	$(EG_TEST_ENV) $(KUBE_TEST_ENV) GODEBUG=cgocheck=1 $(GO) test -count=1 -timeout 10m -run 'EnvoyGateway' ./e2e/
	$(KUBE_TEST_ENV) $(GO) test -count=1 ./controlplane/aigatewayroute/ ./controlplane/envoygateway/

test-envoygateway: ## the extension server's hooks on the inputs Envoy Gateway sent (goldens; make update-goldens rewrites them)
	$(GO) test -count=1 ./controlplane/envoygateway/...

.PHONY: envoy-gateway e2e-envoygateway test-envoygateway

bench-envoygateway: ## BenchmarkHooks(GRPC): each extension hook on the calls Envoy Gateway made (docs/benchmarks.md)
	$(GO) test -run '^$$' -bench 'BenchmarkHooks' -benchmem -count 5 ./controlplane/envoygateway/

.PHONY: bench-envoygateway
