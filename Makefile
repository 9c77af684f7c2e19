# Inflow. Every target documents itself: `make help`.
SHELL := /bin/bash
OUT   := build/out
GO    ?= go
export CGO_ENABLED := 1
# Versions of everything built or shipped: one file (build/versions.env).
include build/versions.env

# Go packages with unit tests that need nothing but Go.
UNIT_PKGS = ./filter/... ./controlplane/... ./e2e/vllmsim/... ./internal/...
FUZZTIME ?= 60s

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN{FS=":.*## "}{printf "  %-18s %s\n", $$1, $$2}'

deps: ## install the Debian packages the build and tests need (idempotent)
	@bash build/deps.sh

build-filter: ## build the Envoy Go filter: build/out/inflow.so
	@mkdir -p $(OUT)
	$(GO) build -buildmode=c-shared -trimpath -o $(OUT)/inflow.so ./filter

build: build-filter build-host build-testfilters build-vllmsim build-controlplane build-epp ## build every binary into build/out

run: demo-local ## main job: 3 vLLM simulators + control plane + inflow.so in the ABI host, on 127.0.0.1:8080

test: deps build kube-assets gie-epp envoy-gateway ## run all tests: vet, unit, fuzz seeds, e2e through the ABI host (the GIE EPP as a peer) and the real Envoy Gateway, Kubernetes (envtest), shipped artefacts
	$(GO) vet ./...
	$(KUBE_TEST_ENV) $(EPP_TEST_ENV) $(EG_TEST_ENV) GODEBUG=cgocheck=1 $(GO) test -count=1 -timeout 30m ./...
	$(MAKE) --no-print-directory check-artefacts

unit: ## run only the unit tests (no ABI host)
	$(GO) test -count=1 $(UNIT_PKGS)

bench: ## run the Go micro-benchmarks (parser, scheduler)
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./filter/...

# The packages with golden files (internal/golden): translator output, the
# control plane's --print, the filter-config compatibility files.
GOLDEN_PKGS = ./controlplane/... ./filter/config/

update-goldens: ## rewrite golden files from the current output and remove orphaned ones (review the diff)
	UPDATE_GOLDEN=1 $(GO) test -count=1 $(GOLDEN_PKGS)

fuzz: ## fuzz the request parser against encoding/json for FUZZTIME (default 60s)
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./filter/request/

.PHONY: help deps build-filter build run test unit bench update-goldens fuzz
include $(wildcard mk/*.mk)
