# Included by the top-level Makefile.
BENCH_TARGETS += bench-backup
.PHONY: bench-backup
bench-backup: ## backup/restore throughput vs `docker cp | zstd` and `tar | zstd` on a generated 1.5 GB volume, with peak RSS; then host→S3 vs client→S3 on a booted server with the client's uplink shaped to 50 Mbit/s (root, local engine, zstd CLI, versitygw)
	@mkdir -p bin
	$(PLUGIN_BUILD) -o bin/docker-dockbridge ./cli-plugin
	$(GO) run ./internal/backup/bench -plugin bin/docker-dockbridge
	$(GO) test -count=1 -timeout 30m -run '^$$' -bench '^BenchmarkBackupHostVsClientS3$$' -benchtime 3x ./internal/e2e/
