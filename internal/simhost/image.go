package simhost

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/dockbridge/dockbridge/simimage"
)

// Image kinds: the Hetzner image names the simulator maps onto local images.
const (
	// KindDockerCE is Hetzner's "docker-ce" app image: Debian 12 with Docker preinstalled.
	KindDockerCE = "docker-ce"
	// KindDebian12 is Hetzner's plain "debian-12" image: no Docker, user_data installs it.
	KindDebian12 = "debian-12"
)

// Architectures of simulated servers. An arm64 server is an arm64 Debian whose programs run
// under qemu-user on this (amd64) machine; its container runtime runs natively (simimage/).
const (
	ArchAMD64 = "amd64"
	ArchARM64 = "arm64"
)

// ImageRef returns the local image tag of kind for the current recipe and the amd64
// architecture, e.g. "dockbridge-sim/docker-ce:0123456789ab". The image may not exist yet:
// see EnsureImages.
func ImageRef(kind string) (string, error) { return ImageRefArch(kind, ArchAMD64) }

// ImageRefArch is ImageRef for an architecture: arm64 images are tagged <hash>-arm64.
func ImageRefArch(kind, arch string) (string, error) {
	switch kind {
	case KindDockerCE, KindDebian12:
	default:
		return "", fmt.Errorf("simulated server image %q: unknown kind (want %q or %q)", kind, KindDockerCE, KindDebian12)
	}
	suffix := ""
	switch arch {
	case "", ArchAMD64:
	case ArchARM64:
		suffix = "-arm64"
	default:
		return "", fmt.Errorf("simulated server architecture %q: unknown (want %s or %s)", arch, ArchAMD64, ArchARM64)
	}
	h, err := simimage.Hash()
	if err != nil {
		return "", err
	}
	return "dockbridge-sim/" + kind + ":" + h + suffix, nil
}

// EnsureImages builds both simulated-server images of each architecture (default amd64) with
// the recipe in simimage/ unless they already exist for the current recipe. A cold build takes
// minutes (debootstrap; about 20 for arm64, under emulation); it needs root, debootstrap and
// the Docker engine, and qemu-user-static for arm64. Its output goes to stderr.
func EnsureImages(ctx context.Context, archs ...string) error {
	if len(archs) == 0 {
		archs = []string{ArchAMD64}
	}
	for _, arch := range archs {
		missing := false
		for _, kind := range []string{KindDebian12, KindDockerCE} {
			ref, err := ImageRefArch(kind, arch)
			if err != nil {
				return err
			}
			if _, _, err := docker(ctx, "image", "inspect", "--format", "{{.Id}}", ref); err != nil {
				missing = true
			}
		}
		if !missing {
			continue
		}
		dir, err := os.MkdirTemp("", "dockbridge-simimage-")
		if err != nil {
			return fmt.Errorf("build simulated server images: %w", err)
		}
		defer os.RemoveAll(dir)
		if err := simimage.WriteTo(dir); err != nil {
			return fmt.Errorf("build simulated server images: %w", err)
		}
		cmd := exec.CommandContext(ctx, "bash", dir+"/build.sh", "--arch", arch)
		cmd.Stdout = os.Stderr
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build simulated server images (simimage/build.sh --arch %s): %w", arch, err)
		}
	}
	return nil
}

// EnsureEmulation makes this machine run arch's programs, when that is not its own: for arm64,
// qemu-user through binfmt_misc (simimage/binfmt.sh; a reboot forgets the registration).
func EnsureEmulation(ctx context.Context, arch string) error {
	if arch != ArchARM64 {
		return nil
	}
	script, err := simimage.Recipe.ReadFile("binfmt.sh")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "bash", "-s")
	cmd.Stdin = bytes.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("arm64 servers need qemu-user emulation: %s (%w)", strings.TrimSpace(string(out)), err)
	}
	return nil
}
