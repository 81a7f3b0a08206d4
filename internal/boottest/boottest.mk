# Boot tests: dockbridge's user-data on simulated servers that really boot it (hcloud-sim
# --backend container). Included by the top-level Makefile. Needs root and Docker; builds the
# simulated-server images on first use (make sim-image).

.PHONY: test-boot
test-boot: ## boot servers through the simulator's container backend and check the user-data over SSH (blank, recreate, foreign fs, full disk, install path, faults)
	$(GO) test -count=1 -timeout 40m -parallel 3 -v ./internal/boottest/

.PHONY: bench-boot
bench-boot: ## server boot-to-ready in the simulator (create call -> SSH -> cloud-init done), median of 5
	$(GO) test -count=1 -timeout 30m -run XXX -bench BootToReady -benchtime 5x ./internal/boottest/

BENCH_TARGETS += bench-boot
