# The hetzner managed volume plugin. Included by the top-level Makefile.

BENCH_TARGETS += bench-plugin

.PHONY: plugin
plugin: ## assemble build/plugin and (re)create the managed plugin hetzner:latest, disabled
	GO=$(GO) VERSION=$(VERSION) bash plugin/build.sh

.PHONY: test-plugin
test-plugin: ## integration tests of the volume plugin (root, real Docker engine, loop devices, simulator)
	$(GO) test -count=1 -timeout 30m -v -run 'TestPlugin' ./internal/volumedriver/integration/...

.PHONY: bench-plugin
bench-plugin: ## API requests and plugin latency per Docker volume operation (simulator, real engine)
	$(GO) test -count=1 -timeout 20m -run '^TestPluginBench$$' -v ./internal/volumedriver/integration/... -args -bench-table
