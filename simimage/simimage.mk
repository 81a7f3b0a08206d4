# Included by the top-level Makefile.

.PHONY: sim-image
sim-image: ## build the simulated-server images (debootstrap Debian 12 + systemd, sshd, cloud-init; docker-ce and debian-12), skipped while simimage/ is unchanged
	bash simimage/build.sh
