# The laptop agent: port forwards and shared folders. Included by the top-level Makefile.

.PHONY: bench-local
bench-local: ## forwarded request vs direct (ratio), save-to-visible (median, p95) and first ready of 50,000 files on a booted server; then sync vs reverse SSHFS on this machine (loopback and 20 ms)
	$(GO) test -count=1 -timeout 40m -run XXX -bench '^BenchmarkLocal$$' -benchtime 1x ./internal/e2e/
	$(GO) test -count=1 -timeout 60m -run XXX -bench '^BenchmarkSyncVersusReverseSSHFS$$' -benchtime 1x ./internal/localagent/

BENCH_TARGETS += bench-local
