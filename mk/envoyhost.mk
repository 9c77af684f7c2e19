# ABI test host (e2e/envoyhost) and the end-to-end tests that drive it.
# api.h comes from the exact SDK version in go.mod (downloaded if missing), so
# the host and the filters always agree on the shared structs.
ENVOY_GO_DIR   = $(shell $(GO) mod download -json github.com/envoyproxy/envoy | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')
HOST_SRCS     := $(wildcard e2e/envoyhost/*.c)
HOST_HDRS     := $(wildcard e2e/envoyhost/*.h)
HOST_PKGS     := libevent libevent_openssl openssl jansson
HOST_CFLAGS   := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -g -pthread
HOST_LDLIBS    = -rdynamic -ldl -lpthread $(shell pkg-config --libs $(HOST_PKGS))
TESTFILTERS   := passthrough panicky configprobe extproc

build-host: $(OUT)/envoyhost ## build the Envoy ABI test host: build/out/envoyhost

$(OUT)/envoyhost: $(HOST_SRCS) $(HOST_HDRS) go.mod
	@mkdir -p $(OUT)
	@test -f "$(ENVOY_GO_DIR)/contrib/golang/common/go/api/api.h" || { echo "cannot find api.h of github.com/envoyproxy/envoy (go mod download failed?)"; exit 1; }
	$(CC) $(HOST_CFLAGS) -I$(ENVOY_GO_DIR)/contrib/golang/common/go/api $(shell pkg-config --cflags $(HOST_PKGS)) \
		-o $@ $(HOST_SRCS) $(HOST_LDLIBS)

build-testfilters: ## build the e2e test filters: build/out/{passthrough,panicky,configprobe,extproc}.so
	@mkdir -p $(OUT)
	$(foreach f,$(TESTFILTERS),$(GO) build -buildmode=c-shared -trimpath -o $(OUT)/$(f).so ./e2e/testfilters/$(f) &&) true

e2e: build-filter build-host build-testfilters build-epp ## run the end-to-end tests (host + filters + OpenAI client)
	GODEBUG=cgocheck=1 $(GO) test -count=1 -timeout 10m ./e2e/ ./e2e/harness/... ./e2e/hostxds/... ./e2e/demo/...

bench-e2e: build-filter build-host build-testfilters ## load benchmark: host + inflow.so vs pass-through filter
	$(GO) run ./e2e/cmd/benche2e -out docs/benchmarks.md

bench-faults: build-filter build-host ## fault run: one of three endpoints killed at 20 requests/s, both pool destination modes; updates docs/benchmarks.md
	$(GO) run ./e2e/cmd/benchfaults -out docs/benchmarks.md

.PHONY: build-host build-testfilters e2e bench-e2e bench-faults
