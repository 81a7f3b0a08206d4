# docker dockbridge: the remote host lifecycle. Included by the top-level Makefile.
DOCKER_CONFIG_DIR ?= $(or $(DOCKER_CONFIG),$(HOME)/.docker)

.PHONY: install
install: server-bins ## put docker-dockbridge (carrying the servers' binaries, from which each server assembles the volume plugin) into ~/.docker/cli-plugins
	@mkdir -p bin
	$(CLI_BUILD) -o bin/docker-dockbridge ./cli-plugin
	install -D -m 0755 bin/docker-dockbridge $(DOCKER_CONFIG_DIR)/cli-plugins/docker-dockbridge
	@docker dockbridge --help >/dev/null && echo "installed: try 'docker dockbridge --help'"

.PHONY: demo
demo: setup build install ## the persistence demo: up, a container with a named and a hetzner volume, down, up, all intact (local simulator with booting servers; the real API after a typed "yes" when HCLOUD_TOKEN is set)
	@if [ -z "$${HCLOUD_TOKEN:-}" ]; then $(MAKE) --no-print-directory sim-image; fi
	bash internal/host/demo.sh

.PHONY: test-host
test-host: ## host lifecycle tests: simulator integration and a real sshd (root, openssh-server, docker)
	$(GO) test -count=1 -v ./internal/host/... ./internal/ui/... ./internal/cli/...

.PHONY: test-e2e
test-e2e: ## end to end: docker dockbridge up/down/up with data intact, idempotency, status, ssh, destroy, faults, Ctrl-C, on servers that really boot (root, Docker; builds the sim images on first use)
	$(GO) test -count=1 -timeout 40m -v ./internal/e2e/

.PHONY: test-arm64
test-arm64: setup-arm64 ## up --server-type cax11 on an Arm server (arm64 image under qemu-user, built on first use), from the release archive: docker info says aarch64, plugin enabled, a hetzner volume mounts, a backup (root, Docker; not in CI)
	DOCKBRIDGE_TEST_ARM64=1 $(GO) test -count=1 -timeout 60m -v -run '^TestUpOnArmServer$$' ./internal/e2e/
