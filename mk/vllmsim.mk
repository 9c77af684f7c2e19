# vllmsim: the vLLM-compatible model-server simulator used by e2e tests and benchmarks.

build-vllmsim: ## build the vLLM simulator: build/out/vllmsim
	@mkdir -p $(OUT)
	$(GO) build -o $(OUT)/vllmsim ./e2e/vllmsim

test-vllmsim: ## unit and HTTP tests of the vLLM simulator
	$(GO) test -count=1 ./e2e/vllmsim/...

.PHONY: build-vllmsim test-vllmsim
