# Multi-server environments: a Docker Swarm of three servers that really boot. Included by the
# top-level Makefile. Root and Docker; slow on two cores (see README.md: whether CI runs it).

.PHONY: test-swarm
test-swarm: ## a Docker Swarm of 3 booted servers: up --nodes 3, stack deploy with a hetzner volume, drain, power cut, refusal, faults, down/up, the idle self-down of all nodes, the wake, node add and node rm of a 4th node; prints the move, self-down, node add and rm times and API requests
	DOCKBRIDGE_TEST_SWARM=1 $(GO) test -count=1 -timeout 60m -v -run '^TestSwarm$$' ./internal/swarmtest/
