# The idle policy and the wake. Included by the top-level Makefile.

.PHONY: bench-idle
bench-idle: ## idle policy on usage traces (billed hours, wakes, vs always on and a naive 5-min policy) and the wake's latency on booted servers (realistic action profile; root, Docker)
	$(GO) test -count=1 -run XXX -bench IdleReplay -benchtime 1x ./internal/idle/
	$(GO) test -count=1 -timeout 30m -run XXX -bench IdleWake -benchtime 1x ./internal/e2e/

BENCH_TARGETS += bench-idle
