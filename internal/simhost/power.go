package simhost

import (
	"context"
	"fmt"
	"strings"
)

// Kill cuts the server's power: every process in it is killed (SIGKILL), with no shutdown,
// and the container is left stopped (Start boots it again). A stopped server is left as it is.
func (h *Host) Kill(ctx context.Context) error {
	if _, _, err := docker(ctx, "kill", "--signal", "KILL", h.Container); err != nil {
		if strings.Contains(err.Error(), "is not running") || !h.running(ctx) {
			return nil
		}
		return fmt.Errorf("power off server %d: %w", h.ID, err)
	}
	_, _, _ = docker(ctx, "wait", h.Container)
	return nil
}
