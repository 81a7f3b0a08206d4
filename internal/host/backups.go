package host

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/dockbridge/dockbridge/cloudinit"
	"github.com/dockbridge/dockbridge/internal/schedule"
	"github.com/dockbridge/dockbridge/internal/serverbin"
)

// The server binary on the host and the scheduled backups it runs there (internal/schedule):
// `backup schedule` puts the binary, the schedule and its S3 credentials on the server, and
// every `up` installs the timer again when the data volume holds schedules (the timer's unit
// files are on the server's own disk, which `down` deletes).

// ServerBinarySource finds the static Linux server binary (the volume plugin, the backup
// helper and the scheduled-backup runner in one) for a server's architecture: the file
// $DOCKBRIDGE_SERVER_BINARY names, else the one this CLI carries (make build, releases), else
// the one in a volume plugin folder (a developer's build/plugin). It returns the binary and
// where it came from.
func ServerBinarySource(arch, pluginDir string) ([]byte, string, error) {
	goarch, err := serverbin.GoArch(arch)
	if err != nil {
		return nil, "", err
	}
	if p := os.Getenv("DOCKBRIDGE_SERVER_BINARY"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, "", fmt.Errorf("DOCKBRIDGE_SERVER_BINARY: %w", err)
		}
		if err := serverbin.CheckELF(data, goarch); err != nil {
			return nil, "", fmt.Errorf("DOCKBRIDGE_SERVER_BINARY %s does not fit a linux/%s server: %w", p, goarch, err)
		}
		return data, p, nil
	}
	b, err := serverbin.Load(goarch)
	if err == nil {
		return b.Data, "the linux/" + goarch + " server binary this docker-dockbridge carries", nil
	}
	if !errors.Is(err, serverbin.ErrNotEmbedded) {
		return nil, "", err
	}
	if pluginDir != "" {
		p := filepath.Join(pluginDir, "rootfs", "hetzner-volume-plugin")
		if data, rerr := os.ReadFile(p); rerr == nil && serverbin.CheckELF(data, goarch) == nil {
			return data, p, nil
		}
	}
	return nil, "", fmt.Errorf("%w: no linux/%s server binary to put on the server; build with `make build`, or set DOCKBRIDGE_SERVER_BINARY to a static linux/%s build of ./volume-plugin", err, goarch, goarch)
}

// EnsureServerBinary makes sure the server holds this CLI's server binary at
// schedule.DefaultBinary (on the data volume): it asks for the server's architecture and the
// installed binary's SHA-256, and uploads (gzip on the wire) only when they differ. It
// returns a note for progress.
func EnsureServerBinary(ctx context.Context, r Remote, pluginDir string) (string, error) {
	out, err := r.Run(ctx, fmt.Sprintf(`echo "arch=$(uname -m)"; echo "sha=$(sha256sum %s 2>/dev/null | cut -d' ' -f1)"`, schedule.DefaultBinary), nil)
	if err != nil {
		return "", fmt.Errorf("check the server binary: %w", err)
	}
	kv := parseKV(out)
	data, from, err := ServerBinarySource(kv["arch"], pluginDir)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	if kv["sha"] == want {
		return "up to date", nil
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if _, err := zw.Write(data); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	bin := schedule.DefaultBinary
	script := fmt.Sprintf(`set -eu
d=%[1]s
install -d -m 0700 %[2]s
install -d -m 0755 "$d"
t=$(mktemp "$d/.upload.XXXXXX")
trap 'rm -f "$t"' EXIT
gzip -dc >"$t"
echo "%[3]s  $t" | sha256sum -c --quiet
chmod 0755 "$t"
mv -f "$t" %[4]s
trap - EXIT
`, filepath.Dir(bin), filepath.Dir(filepath.Dir(bin)), want, bin)
	if _, err := r.Run(ctx, script, &gz); err != nil {
		return "", fmt.Errorf("upload the server binary (%s) to %s: %w", from, bin, err)
	}
	return fmt.Sprintf("uploaded %s (%d MB)", from, len(data)>>20), nil
}

// writeSecretScript writes stdin to a file in the secrets directory (0600, root; the 0700
// directory links to the data volume), replaced atomically.
func writeSecretScript(name string) string {
	return fmt.Sprintf(`set -eu
d=%[1]s
if [ ! -e "$d" ]; then install -d -m 0700 %[2]s; mkdir -p "${d%%/*}"; ln -sfnT %[2]s "$d"; fi
t=$(mktemp "$d/.%[3]s.XXXXXX")
cat >"$t"
mv -f "$t" "$d/%[3]s"
`, cloudinit.SecretsDir, cloudinit.DefaultMountPoint+"/"+cloudinit.SecretsVolumeDir, name)
}

// ScheduleBackups stores a schedule on the environment's server: the server binary, the
// schedule's S3 credentials (on the SSH session's stdin, into a 0600 file of the secrets
// directory: never on a command line, in the user-data or in a log), then the schedule, which
// the server checks by opening its bucket from there; and the timer. It returns the
// schedule with its next run, and notes for progress.
func ScheduleBackups(ctx context.Context, d *Deps, env string, s schedule.Schedule, c schedule.Credentials, pluginDir string) (*schedule.ScheduleStatus, []string, error) {
	var row schedule.ScheduleStatus
	var notes []string
	err := onServer(ctx, d, env, func(r Remote) error {
		note, err := EnsureServerBinary(ctx, r, pluginDir)
		if err != nil {
			return err
		}
		notes = append(notes, "server binary: "+note)
		secret := fmt.Sprintf("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\n", c.AccessKey, c.SecretKey)
		if c.SessionToken != "" {
			secret += "AWS_SESSION_TOKEN=" + c.SessionToken + "\n"
		}
		name := filepath.Base(schedule.SecretFile("", s.ID))
		if _, err := r.Run(ctx, writeSecretScript(name), strings.NewReader(secret)); err != nil {
			return errors.New(c.Redact(fmt.Sprintf("write the S3 credentials to %s/%s: %v", cloudinit.SecretsDir, name, err)))
		}
		js, err := json.Marshal(s)
		if err != nil {
			return err
		}
		out, err := r.Run(ctx, schedule.DefaultBinary+" backup set", bytes.NewReader(js))
		if err != nil {
			return errors.New(c.Redact(err.Error()))
		}
		return json.Unmarshal(out, &row)
	})
	if err != nil {
		return nil, notes, err
	}
	return &row, notes, nil
}

// BackupStatus is the schedules and the volumes' backup state on the environment's server
// (nil when the server has no server binary yet: no schedule was ever made there).
func BackupStatus(ctx context.Context, d *Deps, env string) (*schedule.Status, error) {
	var st *schedule.Status
	err := onServer(ctx, d, env, func(r Remote) error {
		var err error
		st, err = backupStatus(ctx, r)
		return err
	})
	return st, err
}

// backupStatusScript prints the status as JSON, or nothing without the server binary.
var backupStatusScript = fmt.Sprintf(`if [ -x %[1]s ]; then %[1]s backup status -o json; fi`, schedule.DefaultBinary)

func backupStatus(ctx context.Context, r Remote) (*schedule.Status, error) {
	out, err := r.Run(ctx, backupStatusScript, nil)
	if err != nil {
		return nil, fmt.Errorf("backup schedules on the server: %w", err)
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil
	}
	var st schedule.Status
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("backup schedules on the server: %w", err)
	}
	return &st, nil
}

// RemoveBackupSchedule removes a schedule and its credentials from the server.
func RemoveBackupSchedule(ctx context.Context, d *Deps, env, id string) (remaining int, err error) {
	err = onServer(ctx, d, env, func(r Remote) error {
		out, err := r.Run(ctx, fmt.Sprintf(`if [ ! -x %[1]s ]; then echo "no backup schedules on this server" >&2; exit 3; fi; %[1]s backup rm %[2]s`, schedule.DefaultBinary, shellQuote(id)), nil)
		if err != nil {
			return err
		}
		var res struct {
			Remaining int `json:"remaining"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			return err
		}
		remaining = res.Remaining
		return nil
	})
	return remaining, err
}

// RunBackupSchedule runs a schedule on the server now (with a restore drill when drill), and
// returns the run's report. The run happens on the server; this waits for it.
func RunBackupSchedule(ctx context.Context, d *Deps, env, id string, drill bool) (*schedule.RunReport, error) {
	var rep schedule.RunReport
	err := onServer(ctx, d, env, func(r Remote) error {
		cmd := fmt.Sprintf(`%s backup run %s`, schedule.DefaultBinary, shellQuote(id))
		if drill {
			cmd += " --drill"
		}
		out, err := r.Run(ctx, cmd, nil)
		if jerr := json.Unmarshal(out, &rep); jerr != nil && err == nil {
			err = jerr
		}
		if err != nil && len(rep.Runs) > 0 {
			return nil // the report says what failed
		}
		return err
	})
	return &rep, err
}

// ensureBackupTimer is up's step for scheduled backups: when the data volume holds schedules,
// the server binary is brought up to date and the timer installed (a new server has neither
// on its own disk). It returns a note.
func ensureBackupTimer(ctx context.Context, r Remote, pluginDir string) (string, error) {
	f := schedule.DefaultDir + "/" + schedule.SchedulesFile
	out, err := r.Run(ctx, fmt.Sprintf(`if [ -s %[1]s ]; then grep -c '"id":' %[1]s || true; else echo 0; fi`, f), nil)
	if err != nil {
		return "", fmt.Errorf("look for backup schedules: %w", err)
	}
	n := strings.TrimSpace(string(out))
	if n == "0" || n == "" {
		return "none", nil
	}
	note, err := EnsureServerBinary(ctx, r, pluginDir)
	if err != nil {
		return "", err
	}
	if _, err := r.Run(ctx, schedule.DefaultBinary+" backup install-timer", nil); err != nil {
		return "", fmt.Errorf("install the backup timer: %w", err)
	}
	return fmt.Sprintf("%s schedule(s), timer installed, server binary %s", n, note), nil
}

// onServer connects to the environment's running server with what this machine knows about it
// (address, pinned host key, our key: no API request), and runs fn.
func onServer(ctx context.Context, d *Deps, env string, fn func(Remote) error) error {
	d.defaults()
	if err := ValidateEnvName(env); err != nil {
		return err
	}
	st, err := loadState(d.Paths, env)
	if err != nil {
		return err
	}
	if st.ServerIPv4 == "" || st.HostKey == "" {
		return fmt.Errorf("environment %q has no server this machine knows of: run `docker dockbridge up%s` first", env, nameFlag(env))
	}
	hk, next, err := st.pins()
	if err != nil {
		return err
	}
	path := d.Config.SSHKey
	if path == "" {
		path = d.Paths.UserKeyFile(env)
	}
	kp, _, err := LoadOrCreateKey(path, "", false)
	if err != nil {
		return err
	}
	port := d.SSHPort
	if st.SSHPort != 0 {
		port = st.SSHPort
	}
	r, err := d.Dial(ctx, Target{Addr: net.JoinHostPort(st.ServerIPv4, fmt.Sprint(port)), User: d.SSHUser, Signer: kp.Signer, HostKey: hk, NextHostKey: next})
	if err != nil {
		return fmt.Errorf("reach the server of environment %q (is it up? `docker dockbridge status%s`): %w", env, nameFlag(env), err)
	}
	defer r.Close()
	return fn(r)
}
