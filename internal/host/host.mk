# docker dockbridge: the remote host lifecycle. Included by the top-level Makefile.
DOCKER_CONFIG_DIR ?= $(or $(DOCKER_CONFIG),$(HOME)/.docker)

.PHONY: install
install: server-bins ## put docker-dockbridge (carrying the servers' binaries) into ~/.docker/cli-plugins (and build/plugin, if built, into ~/.docker/dockbridge/volume-plugin)
	@mkdir -p bin
	$(CLI_BUILD) -o bin/docker-dockbridge ./cli-plugin
	install -D -m 0755 bin/docker-dockbridge $(DOCKER_CONFIG_DIR)/cli-plugins/docker-dockbridge
	@if [ -f build/plugin/config.json ]; then \
	  mkdir -p $(DOCKER_CONFIG_DIR)/dockbridge && chmod 0700 $(DOCKER_CONFIG_DIR)/dockbridge && \
	  rm -rf $(DOCKER_CONFIG_DIR)/dockbridge/volume-plugin && cp -a build/plugin $(DOCKER_CONFIG_DIR)/dockbridge/volume-plugin && \
	  echo "volume plugin folder: $(DOCKER_CONFIG_DIR)/dockbridge/volume-plugin"; \
	else echo "note: build/plugin is missing (make plugin): up will need --no-volume-plugin or --plugin-dir"; fi
	@docker dockbridge --help >/dev/null && echo "installed: try 'docker dockbridge --help'"

.PHONY: demo
demo: setup build plugin install ## the persistence demo: up, a container with a named and a hetzner volume, down, up, all intact (local simulator with booting servers; the real API after a typed "yes" when HCLOUD_TOKEN is set)
	@if [ -z "$${HCLOUD_TOKEN:-}" ]; then $(MAKE) --no-print-directory sim-image; fi
	bash internal/host/demo.sh

.PHONY: test-host
test-host: ## host lifecycle tests: simulator integration and a real sshd (root, openssh-server, docker)
	$(GO) test -count=1 -v ./internal/host/... ./internal/ui/... ./internal/cli/...

.PHONY: test-e2e
test-e2e: ## end to end: docker dockbridge up/down/up with data intact, idempotency, status, ssh, destroy, faults, Ctrl-C, on servers that really boot (root, Docker; builds the sim images on first use)
	$(GO) test -count=1 -timeout 40m -v ./internal/e2e/
