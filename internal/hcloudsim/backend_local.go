package hcloudsim

import (
	"fmt"
	"log/slog"
)

// LocalBackendConfig configures the local backend.
type LocalBackendConfig struct {
	ImageDir string
	ByIDDir  string
	Logger   *slog.Logger
}

// NewLocalBackend is not available yet: it needs internal/mount/loopdev.
func NewLocalBackend(cfg LocalBackendConfig) (Backend, error) {
	return nil, fmt.Errorf("the local backend is not built yet (waiting for internal/mount/loopdev)")
}
