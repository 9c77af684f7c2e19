# inflow-epp: Inflow as an Endpoint Picker (an ext_proc server), and the
# Gateway API Inference Extension's own EPP as the peer it is measured
# against. The EPP is built by its own module (build/epp) so its
# Kubernetes and OpenTelemetry dependencies stay out of the product's
# go.mod, and cached per version under bin/ (gitignored): cold about 4 min
# on the shared 2-core machine, warm nothing.
# GIE_EPP_VERSION comes from build/versions.env (build/check holds
# build/epp/go.mod to it).
include build/versions.env
GIE_EPP_DIR     := $(CURDIR)/bin/epp/$(GIE_EPP_VERSION)
GIE_EPP         := $(GIE_EPP_DIR)/epp
export INFLOW_GIE_EPP := $(GIE_EPP)
# make test builds the EPP, so its tests may not skip (harness.RequireEPPEnv).
EPP_TEST_ENV := INFLOW_REQUIRE_EPP=1

build-epp: ## build the ext_proc endpoint picker: build/out/inflow-epp
	@mkdir -p $(OUT)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(OUT)/inflow-epp ./cmd/inflow-epp

gie-epp: $(GIE_EPP) ## build the Inference Extension's EPP (cmd/epp at build/epp's version) into bin/epp/<version>

# No prerequisites: the folder is keyed on the version. A scratch folder
# first, so an interrupted build leaves nothing that looks finished.
$(GIE_EPP):
	@rm -rf $(GIE_EPP_DIR).tmp && mkdir -p $(GIE_EPP_DIR).tmp
	cd build/epp && nice $(GO) build -trimpath -ldflags "-s -w" -o $(GIE_EPP_DIR).tmp/epp sigs.k8s.io/gateway-api-inference-extension/cmd/epp
	mkdir -p $(GIE_EPP_DIR) && mv $(GIE_EPP_DIR).tmp/epp $@ && rmdir $(GIE_EPP_DIR).tmp

.PHONY: build-epp gie-epp

# inflow.so without its response path, for bench-hop's like-for-like row
# only (filter/envoyfilter/responsepath_off.go): never shipped.
build-filter-request-only:
	@mkdir -p $(OUT)
	$(GO) build -buildmode=c-shared -trimpath -tags inflow_request_only -o $(OUT)/inflow-request-only.so ./filter

bench-hop: build-filter build-filter-request-only build-host build-testfilters build-epp gie-epp kube-assets ## the ext_proc hop's cost: host + passthrough.so / inflow.so (with and without its response path) / ext_proc -> inflow-epp / ext_proc -> GIE EPP; updates docs/benchmarks.md
	$(GO) run ./e2e/cmd/benchhop -out docs/benchmarks.md $(BENCH_HOP_FLAGS)

.PHONY: build-filter-request-only bench-hop
