package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/volumeops"
	"github.com/dockbridge/dockbridge/internal/volumeops/volumeopstest"
)

// runVolumeCLI runs one of our commands against the real engine and returns stdout and the error.
func runVolumeCLI(t *testing.T, mk func(deps) *cobra.Command, args ...string) (string, error) {
	t.Helper()
	out, _, err := runVolumeCLIStderr(t, mk, args...)
	return out, err
}

// runVolumeCLIStderr is runVolumeCLI that also returns stderr.
func runVolumeCLIStderr(t *testing.T, mk func(deps) *cobra.Command, args ...string) (string, string, error) {
	t.Helper()
	c := volumeopstest.Client(t)
	var out, errOut bytes.Buffer
	d := deps{
		engine: func() (*volumeops.Engine, error) {
			return &volumeops.Engine{API: c, Context: "cli-test", HelperBinary: volumeopstest.HelperBinary(t), Progress: &errOut}, nil
		},
		out: &out, errOut: &errOut,
	}
	cmd := mk(d)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(t.Context())
	t.Logf("%s: stderr:\n%s", strings.Join(args, " "), errOut.String())
	return out.String(), errOut.String(), err
}

// The commands a user types, end to end on the real engine: backup, ls, verify, restore into a
// new volume, volume ls/inspect/check, metrics, prune.
func TestVolumeCommandsEndToEnd(t *testing.T) {
	c := volumeopstest.Client(t)
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	src := volumeopstest.Volume(t, c, "dbt-cli-"+suffix, "local", nil, map[string]string{"role": "cli-test"})
	mp, err := c.VolumeInspect(t.Context(), src, volumeInspectOpts())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mp.Volume.Mountpoint, "hello.txt"), []byte("hello from the cli test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "backups") // backup makes it, and says so

	// A word that names no volume is not taken as one: a typo of `backup ls` says so.
	if _, err := runVolumeCLI(t, backupCmd, "lst", "--to", dir); err == nil || !strings.Contains(err.Error(), `no volume named "lst"`) ||
		!strings.Contains(err.Error(), "Did you mean this?\n\tls") {
		t.Fatalf("backup lst: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "lst")); err == nil {
		t.Fatal("backup lst made something")
	}
	// No destination: a clear error.
	t.Setenv("DOCKBRIDGE_BACKUP_TO", "")
	if _, err := runVolumeCLI(t, backupCmd, src); err == nil || !strings.Contains(err.Error(), "--to") {
		t.Fatalf("backup without --to: %v", err)
	}
	out, stderr, err := runVolumeCLIStderr(t, backupCmd, src, "--to", dir, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "Created the backup directory "+dir) {
		t.Errorf("backup into a new directory does not say it made it:\n%s", stderr)
	}
	var br []volumeops.BackupResult
	if err := json.Unmarshal([]byte(out), &br); err != nil || len(br) != 1 || br[0].Metadata.Files != 1 {
		t.Fatalf("backup output %s: %v", out, err)
	}
	name := br[0].Archive.Name

	out, err = runVolumeCLI(t, backupLsCmd, "--from", dir)
	if err != nil || !strings.Contains(out, name) || !strings.Contains(out, "complete") {
		t.Fatalf("backup ls: %v\n%s", err, out)
	}
	out, err = runVolumeCLI(t, backupVerifyCmd, filepath.Join(dir, name))
	if err != nil || !strings.Contains(out, "OK") || !strings.Contains(out, "1 files, 24 bytes") {
		t.Fatalf("verify: %v\n%s", err, out)
	}

	// Restore into the existing volume: refused, it holds data.
	if _, err := runVolumeCLI(t, restoreCmd, filepath.Join(dir, name)); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("restore over data: %v", err)
	}
	dst := "dbt-cli-copy-" + suffix
	t.Cleanup(func() { volumeopstest.RemoveVolume(c, dst) })
	// By the bare name `backup ls` prints, from DOCKBRIDGE_BACKUP_TO, in another directory.
	t.Setenv("DOCKBRIDGE_BACKUP_TO", dir)
	t.Chdir(t.TempDir())
	out, err = runVolumeCLI(t, restoreCmd, name, "--volume", dst)
	if err != nil || !strings.Contains(out, "Created:   yes") {
		t.Fatalf("restore: %v\n%s", err, out)
	}

	out, err = runVolumeCLI(t, volumeLsCmd, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var vols []volumeops.Volume
	if err := json.Unmarshal([]byte(out), &vols); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, v := range vols {
		if (v.Name == src || v.Name == dst) && v.Labels["role"] == "cli-test" && v.Driver == "local" {
			found++
		}
	}
	if found != 2 {
		t.Fatalf("volume ls -o json does not show both volumes with their labels:\n%s", out)
	}
	out, err = runVolumeCLI(t, volumeInspectCmd, dst)
	if err != nil || !strings.Contains(out, "in 1 entries") || !strings.Contains(out, "role=cli-test") {
		t.Fatalf("volume inspect: %v\n%s", err, out)
	}

	// Thresholds: this volume's filesystem is above 1% used, so 1%/2% makes it critical.
	out, err = runVolumeCLI(t, volumeCheckCmd, dst, "--warning", "1", "--critical", "2")
	if err == nil || !strings.Contains(err.Error(), "1 volume is critical") || !strings.Contains(out, "CRITICAL") {
		t.Fatalf("volume check critical: %v\n%s", err, out)
	}
	out, err = runVolumeCLI(t, volumeCheckCmd, dst, "--warning", "99.9", "--critical", "100", "-o", "json")
	if err != nil {
		t.Fatalf("volume check ok: %v\n%s", err, out)
	}
	var cr []volumeops.CheckResult
	if err := json.Unmarshal([]byte(out), &cr); err != nil || len(cr) != 1 || cr[0].Status != volumeops.StatusOK || !cr[0].Writable || !cr[0].Mounted {
		t.Fatalf("volume check json %s: %v", out, err)
	}

	out, err = runVolumeCLI(t, metricsCmd, "--backups", dir)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(out))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, out)
	}
	if _, ok := fams["dockbridge_backup_last_success_timestamp_seconds"]; !ok || !strings.Contains(out, `dockbridge_volume_used_bytes{volume="`+dst+`"}`) {
		t.Fatalf("metrics lack backup or usage:\n%s", out)
	}
	tf := filepath.Join(t.TempDir(), "dockbridge.prom")
	if _, err := runVolumeCLI(t, metricsCmd, "--no-usage", "--textfile", tf); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(tf); err != nil || !bytes.Contains(b, []byte("dockbridge_volume_info")) {
		t.Fatalf("textfile: %v %s", err, b)
	}

	// Prune keeps the newest verified backup whatever the rule says.
	clock = func() time.Time { return time.Now().Add(365 * 24 * time.Hour) }
	defer func() { clock = time.Now }()
	out, err = runVolumeCLI(t, backupPruneCmd, "--from", dir, "--keep-within", "24h", "--force")
	if err != nil || !strings.Contains(out, "newest verified backup") {
		t.Fatalf("prune: %v\n%s", err, out)
	}
	if bs, _ := backup.List(t.Context(), mustDir(t, dir)); len(bs) != 1 {
		t.Fatalf("prune deleted the only backup")
	}
}

func mustDir(t *testing.T, dir string) backup.Store {
	s, err := backup.NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestArchiveLocations(t *testing.T) {
	t.Setenv("DOCKBRIDGE_BACKUP_TO", "")
	for _, tc := range []struct {
		arg, from string
		locs      []string
		name      string
	}{
		{"/srv/b/x.tar.zst", "", []string{"/srv/b/"}, "x.tar.zst"},
		{"x.tar.zst", "", []string{"."}, "x.tar.zst"},
		{"x.tar.zst", "s3://bkt/p", []string{"s3://bkt/p", "."}, "x.tar.zst"},
		{"s3://bkt/host1/x.tar.zst", "", []string{"s3://bkt/host1/"}, "x.tar.zst"},
		{"./x.tar", "", []string{"./"}, "x.tar"},
	} {
		locs, name := archiveLocations(tc.arg, tc.from)
		if !slices.Equal(locs, tc.locs) || name != tc.name {
			t.Errorf("archiveLocations(%q, %q) = %q, %q", tc.arg, tc.from, locs, name)
		}
	}
}
