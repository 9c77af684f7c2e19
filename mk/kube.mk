# Kubernetes: the real kube-apiserver + etcd the Kubernetes source is tested
# against (envtest), built from the Go module proxy by their own module
# (build/kubeassets) so the product's go.mod stays small. Cached per version
# under bin/ (gitignored): a cold build takes about 5 minutes, a warm one
# nothing (measured cold, empty module and build caches, on the shared 2-core
# machine: 7 min 9 s). Versions: build/versions.env (KUBERNETES_VERSION, ETCD_VERSION).
KUBE_ASSETS    := $(CURDIR)/bin/k8s/$(KUBERNETES_VERSION)
KUBE_VERSION_PKG := k8s.io/component-base/version
KUBE_MINOR      = $(word 2,$(subst ., ,$(KUBERNETES_VERSION)))
KUBE_LDFLAGS    = -s -w -X $(KUBE_VERSION_PKG).gitVersion=$(KUBERNETES_VERSION) \
	-X $(KUBE_VERSION_PKG).gitMajor=1 -X $(KUBE_VERSION_PKG).gitMinor=$(KUBE_MINOR) \
	-X $(KUBE_VERSION_PKG).gitTreeState=clean

# envtest finds the binaries here; INFLOW_REQUIRE_KUBE turns a missing asset
# into a failure instead of a skip, so `make test` (and CI) always runs them.
export KUBEBUILDER_ASSETS := $(KUBE_ASSETS)
KUBE_TEST_ENV := INFLOW_REQUIRE_KUBE=1

kube-assets: $(KUBE_ASSETS)/kube-apiserver $(KUBE_ASSETS)/etcd ## build kube-apiserver and etcd for envtest into bin/k8s/<version> (cold: ~5 min)

# One go build for both shares the compile of their common dependencies; it
# writes into a scratch folder first so an interrupted build leaves nothing
# that looks finished. No prerequisites: the folder is keyed on the version
# (build/check holds build/kubeassets/go.mod to it), so a touched go.mod
# does not cost a rebuild.
$(KUBE_ASSETS)/kube-apiserver $(KUBE_ASSETS)/etcd &:
	@mkdir -p $(KUBE_ASSETS).tmp
	cd build/kubeassets && nice $(GO) build -trimpath -ldflags "$(KUBE_LDFLAGS)" -o $(KUBE_ASSETS).tmp/ \
		k8s.io/kubernetes/cmd/kube-apiserver go.etcd.io/etcd/server/v3
	@# go names etcd's main package after its path, minus the /v3 suffix.
	mv $(KUBE_ASSETS).tmp/server $(KUBE_ASSETS).tmp/etcd
	mkdir -p $(KUBE_ASSETS)
	mv $(KUBE_ASSETS).tmp/kube-apiserver $(KUBE_ASSETS).tmp/etcd $(KUBE_ASSETS)/
	rmdir $(KUBE_ASSETS).tmp

.PHONY: kube-assets

# The CRDs Inflow reads that the Inference Extension owns, copied verbatim
# from the module go.mod pins (never edited by hand; build/check compares
# them byte for byte). The Envoy AI Gateway's CRDs come with its own
# install: its module is not available to us.
GIE_MODULE := sigs.k8s.io/gateway-api-inference-extension
GIE_CRDS   := inference.networking.k8s.io_inferencepools.yaml inference.networking.x-k8s.io_inferenceobjectives.yaml

crds: ## copy the InferencePool and InferenceObjective CRDs from the go.mod-pinned module into build/k8s/crds
	@dir=$$($(GO) list -m -f '{{.Dir}}' $(GIE_MODULE)) && test -n "$$dir" && \
	for f in $(GIE_CRDS); do install -m 0644 "$$dir/config/crd/bases/$$f" build/k8s/crds/$$f; done
	@echo "build/k8s/crds: $(GIE_CRDS) from $$($(GO) list -m $(GIE_MODULE))"

# The e2e package's Kubernetes tests run the real filter in the xDS-driven
# host fed by the control plane in Kubernetes mode (its TestMain builds them).
E2E_KUBE_TESTS := ^TestKubernetes

e2e-kube: kube-assets ## the Kubernetes tests against a real kube-apiserver + etcd (envtest), at the xDS level and through the host
	$(KUBE_TEST_ENV) $(GO) test -count=1 -timeout 15m ./controlplane/kube/...
	$(KUBE_TEST_ENV) $(GO) test -count=1 -timeout 15m -run '$(E2E_KUBE_TESTS)' ./e2e/

.PHONY: crds e2e-kube

bench-kube: build-controlplane build-filter build-host kube-assets ## churn benchmark: 200 pods flipping readiness on a real API server, at the xDS level and through the host under load; updates docs/benchmarks.md
	$(GO) run ./e2e/benchkube -out docs/benchmarks.md

.PHONY: bench-kube
