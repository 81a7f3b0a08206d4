package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/volumeops"
)

// engineWithoutVolumes is an engine that has no volume at all (every other call panics).
type engineWithoutVolumes struct{ volumeops.API }

func (engineWithoutVolumes) VolumeList(context.Context, client.VolumeListOptions) (client.VolumeListResult, error) {
	return client.VolumeListResult{}, nil
}

func (engineWithoutVolumes) DiskUsage(context.Context, client.DiskUsageOptions) (client.DiskUsageResult, error) {
	return client.DiskUsageResult{}, nil
}

// `volume check` on an engine without volumes has nothing to check: that is not critical.
func TestVolumeCheckWithoutVolumesSucceeds(t *testing.T) {
	for _, format := range []string{"table", "json"} {
		var out, errOut bytes.Buffer
		d := deps{out: &out, errOut: &errOut, engine: func() (*volumeops.Engine, error) {
			return &volumeops.Engine{API: engineWithoutVolumes{}, Context: "empty"}, nil
		}}
		cmd := volumeCheckCmd(d)
		cmd.SetArgs([]string{"-o", format})
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		if err := cmd.ExecuteContext(t.Context()); err != nil {
			t.Fatalf("volume check -o %s without volumes: %v", format, err)
		}
		want := "No volumes: nothing to check."
		if format == "json" {
			want = "[]"
		}
		if strings.TrimSpace(out.String()) != want {
			t.Errorf("volume check -o %s printed %q, want %q", format, out.String(), want)
		}
	}
}
