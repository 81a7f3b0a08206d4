# Included by the top-level Makefile.
BENCH_TARGETS += bench-backup
.PHONY: bench-backup
bench-backup: ## backup/restore throughput vs `docker cp | zstd` and `tar | zstd` on a generated 1.5 GB volume, with peak RSS (root, local engine, zstd CLI)
	@mkdir -p bin
	$(PLUGIN_BUILD) -o bin/docker-dockbridge ./cli-plugin
	$(GO) run ./internal/backup/bench -plugin bin/docker-dockbridge
