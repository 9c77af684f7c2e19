# Endpoint picking: pool state (filter/pool) and the scheduler (filter/scheduler).
BENCH_SCHED_FLAGS ?=

test-scheduler: ## unit tests of the scheduler, pool state and scheduler settings, with -race
	$(GO) test -count=1 -race ./filter/scheduler/... ./filter/pool/... ./filter/config/...

bench-pick: ## BenchmarkPick: one pick of a 4 KiB chat prompt at 8, 64 and 512 endpoints
	$(GO) test -run '^$$' -bench BenchmarkPick -benchtime=1s ./filter/scheduler/

bench-sched: build-filter build-host build-testfilters gie-epp kube-assets ## scheduling quality on 6 vLLM simulators through the ABI host: random, round-robin, least-in-flight, Inflow, the GIE EPP; the feedback scenarios; R = 1, 2, 4 Envoy replicas; updates docs/benchmarks.md (BENCH_SCHED_FLAGS=-scenario NAME for one table)
	$(GO) run ./e2e/benchsched -out docs/benchmarks.md $(BENCH_SCHED_FLAGS)

.PHONY: test-scheduler bench-pick bench-sched
