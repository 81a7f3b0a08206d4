package simhost

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	"github.com/dockbridge/dockbridge/simimage"
)

// Image kinds: the Hetzner image names the simulator maps onto local images.
const (
	// KindDockerCE is Hetzner's "docker-ce" app image: Debian 12 with Docker preinstalled.
	KindDockerCE = "docker-ce"
	// KindDebian12 is Hetzner's plain "debian-12" image: no Docker, user_data installs it.
	KindDebian12 = "debian-12"
)

// ImageRef returns the local image tag of kind for the current recipe, e.g.
// "dockbridge-sim/docker-ce:0123456789ab". The image may not exist yet: see EnsureImages.
func ImageRef(kind string) (string, error) {
	switch kind {
	case KindDockerCE, KindDebian12:
	default:
		return "", fmt.Errorf("simulated server image %q: unknown kind (want %q or %q)", kind, KindDockerCE, KindDebian12)
	}
	h, err := simimage.Hash()
	if err != nil {
		return "", err
	}
	return "dockbridge-sim/" + kind + ":" + h, nil
}

// EnsureImages builds both simulated-server images with the recipe in simimage/ unless they
// already exist for the current recipe. A cold build takes minutes (debootstrap); it needs
// root, debootstrap and the Docker engine. Its output goes to stderr.
func EnsureImages(ctx context.Context) error {
	missing := false
	for _, kind := range []string{KindDebian12, KindDockerCE} {
		ref, err := ImageRef(kind)
		if err != nil {
			return err
		}
		if _, _, err := docker(ctx, "image", "inspect", "--format", "{{.Id}}", ref); err != nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	dir, err := os.MkdirTemp("", "dockbridge-simimage-")
	if err != nil {
		return fmt.Errorf("build simulated server images: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := simimage.WriteTo(dir); err != nil {
		return fmt.Errorf("build simulated server images: %w", err)
	}
	cmd := exec.CommandContext(ctx, "bash", dir+"/build.sh")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build simulated server images (simimage/build.sh): %w", err)
	}
	return nil
}
