# Included by the top-level Makefile.

.PHONY: sim-image
sim-image: ## build the simulated-server images (debootstrap Debian 12 + systemd, sshd, cloud-init; docker-ce and debian-12), skipped while simimage/ is unchanged
	bash simimage/build.sh

.PHONY: sim-image-arm64
sim-image-arm64: ## build the arm64 simulated-server images for Hetzner's Arm (cax) types: arm64 Debian under qemu-user (make setup-arm64 first; about 20 minutes the first time)
	bash simimage/build.sh --arch arm64
