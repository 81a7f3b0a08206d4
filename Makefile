# dockbridge — `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# The build date is the commit's (or $SOURCE_DATE_EPOCH's): the same source builds the same binary.
BUILD_DATE ?= $(shell if [ -n "$$SOURCE_DATE_EPOCH" ]; then date -u -d "@$$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ; else TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo unknown; fi)
VERSION_PKG := github.com/dockbridge/dockbridge/internal/version
LDFLAGS := -s -w -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Commit=$(COMMIT) -X $(VERSION_PKG).BuildDate=$(BUILD_DATE)
GOFLAGS_BUILD := -trimpath -ldflags '$(LDFLAGS)'

# The servers run one static Linux binary, the hetzner volume plugin, which is also the backup
# helper (it spends most of a backup compressing): internal/serverbin/build.sh builds it for
# amd64 and arm64, linking the reference zstd library statically where the C toolchain for the
# architecture has it (about 1.5x as fast per core as the pure-Go encoder; `make setup`
# installs gcc, the arm64 cross compiler and libzstd-dev for both), and compresses it into
# internal/serverbin/payload, which the CLI embeds (-tags serverbin). LIBZSTD=0 forces pure Go,
# LIBZSTD=1 requires the library (make release does). A plain `go build ./cli-plugin` embeds
# nothing and falls back to its own binary as the helper, which PLUGIN_BUILD links like the
# server binary (the backup benchmark and the tests' helper, internal/volumeops/volumeopstest,
# are built that way). LIBZSTD is decided when a recipe runs, not when make reads this file:
# `make demo` and `make test` run setup first, and their build must be the one `make build`
# gives after setup.
LIBZSTD ?= $(if $(wildcard $(shell gcc -print-file-name=libzstd.a 2>/dev/null)),1,0)
PLUGIN_BUILD_LIBZSTD = CGO_ENABLED=1 $(GO) build -trimpath -tags libzstd,netgo,osusergo -ldflags '$(LDFLAGS) -linkmode external -extldflags "-static"'
PLUGIN_BUILD_PUREGO = CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD)
PLUGIN_BUILD = $(if $(filter 1,$(LIBZSTD)),$(PLUGIN_BUILD_LIBZSTD),$(PLUGIN_BUILD_PUREGO))
TEST_TAGS = $(if $(filter 1,$(LIBZSTD)),-tags libzstd)
SERVERBIN_LIBZSTD = $(if $(filter command line environment,$(origin LIBZSTD)),$(LIBZSTD),auto)
SERVERBIN_ARCHES := amd64 arm64
SERVERBIN = GO=$(GO) LDFLAGS='$(LDFLAGS)' bash internal/serverbin/build.sh
CLI_BUILD = CGO_ENABLED=0 $(GO) build -trimpath -tags serverbin -ldflags '$(LDFLAGS)'
HOSTARCH := $(shell $(GO) env GOHOSTARCH 2>/dev/null)
# What `make release` builds into dist/ (scripts/release.sh): one archive per target.
RELEASE_TARGETS := darwin/arm64 darwin/amd64 linux/amd64 linux/arm64 windows/amd64

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: server-bins ## build bin/docker-dockbridge (carrying the servers' binaries), bin/hcloud-sim and bin/hetzner-volume-plugin
	@mkdir -p bin
	$(CLI_BUILD) -o bin/docker-dockbridge ./cli-plugin
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/hcloud-sim ./cmd/hcloud-sim
	cp build/serverbin/hetzner-volume-plugin-linux-$(HOSTARCH) bin/hetzner-volume-plugin

.PHONY: server-bins
server-bins: ## the servers' static binary (hetzner volume plugin + backup helper) for amd64 and arm64, compressed into internal/serverbin/payload for the CLI to embed
	LIBZSTD=$(SERVERBIN_LIBZSTD) $(SERVERBIN) $(SERVERBIN_ARCHES)

.PHONY: release
release: ## dist/: docker-dockbridge for macOS, Linux and Windows (amd64, arm64), each archive with its .sha256, checksums.txt and install.sh
	LIBZSTD=$(if $(filter 0,$(LIBZSTD)),0,1) $(SERVERBIN) $(SERVERBIN_ARCHES)
	GO=$(GO) LDFLAGS='$(LDFLAGS)' bash scripts/release.sh $(RELEASE_TARGETS)

.PHONY: setup
setup: ## install what make build and make demo need (Debian packages) and start dockerd if none answers (root)
	@bash scripts/setup.sh

.PHONY: setup-tests
setup-tests: ## setup, plus what make test needs: the tools the tests drive, versitygw, Terraform and its hcloud provider (root)
	@bash scripts/setup.sh --tests

.PHONY: setup-arm64
setup-arm64: ## setup, plus qemu-user-static and its binfmt_misc registration: arm64 simulated servers (make test-arm64)
	@bash scripts/setup.sh --arm64

.PHONY: test
test: setup-tests ## run every test: real engine, loop devices, cloud-init, sshd, the simulator (root; restarts dockerd once, at the end)
	$(GO) test $(TEST_TAGS) -count=1 -timeout 80m ./...
	@echo "a Docker Swarm of three booted servers (alone: make test-swarm)"
	DOCKBRIDGE_TEST_SWARM=1 $(GO) test -count=1 -timeout 60m -run '^TestSwarm$$' ./internal/swarmtest/
	@echo "restarting dockerd under a running container on a hetzner volume (alone: it would disturb the tests above)"
	DOCKBRIDGE_TEST_DOCKERD_RESTART=1 $(GO) test $(TEST_TAGS) -count=1 -timeout 15m -run '^TestPluginSurvivesDockerdRestart$$' ./internal/volumedriver/integration/

.PHONY: lint
lint: ## go vet, gofmt and go mod tidy must be clean; vet for macOS too, and the CLI plugin must build for every release target
	$(GO) vet ./...
	$(if $(TEST_TAGS),$(GO) vet $(TEST_TAGS) ./internal/backup)
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	@set -e; for t in $(RELEASE_TARGETS); do echo "GOOS=$${t%/*} GOARCH=$${t#*/} go build ./cli-plugin"; \
	  CGO_ENABLED=0 GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build -o /dev/null ./cli-plugin; done
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@cp go.mod /tmp/go.mod.lint && cp go.sum /tmp/go.sum.lint && $(GO) mod tidy && \
	  if ! diff -q go.mod /tmp/go.mod.lint >/dev/null || ! diff -q go.sum /tmp/go.sum.lint >/dev/null; then \
	    echo "go mod tidy changed go.mod/go.sum: commit the result"; exit 1; fi

# Each part keeps its targets beside its code; a fragment adds its benchmark to BENCH_TARGETS.
BENCH_TARGETS :=
-include simimage/simimage.mk plugin/plugin.mk internal/host/host.mk internal/backup/backup.mk internal/boottest/boottest.mk internal/localagent/local.mk internal/swarmtest/swarmtest.mk internal/idle/idle.mk

.PHONY: bench
bench: ## print every benchmark table (API requests per Docker operation, backup throughput) with ratios against baselines run in the same script
	@set -e; for t in $(BENCH_TARGETS); do $(MAKE) --no-print-directory $$t; done

.PHONY: clean
clean: ## remove build output
	rm -rf bin build dist internal/serverbin/payload
