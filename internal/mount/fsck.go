package mount

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/dockbridge/dockbridge/internal/mount/internal/cmdrun"
	"github.com/dockbridge/dockbridge/internal/mount/internal/mountinfo"
)

// ErrMounted: the device is mounted, and the operation needs it unmounted.
var ErrMounted = errors.New("mounted")

// FsckReport is what a filesystem check found, and what a repair did.
type FsckReport struct {
	Device string `json:"device"`
	FSType string `json:"fs_type"`
	// Clean: the check found nothing wrong.
	Clean bool `json:"clean"`
	// Findings are the problems the check reported, one per line, as the tool worded them
	// (its questions and progress lines left out).
	Findings []string `json:"findings"`
	// Repair: a repair was asked for. Repaired: it ran and a second check found nothing wrong.
	Repair   bool `json:"repair"`
	Repaired bool `json:"repaired"`
	// Runs are the tool runs in order: the check, and with a repair the repair and the check
	// after it.
	Runs []ToolRun `json:"runs"`
}

// ProblemsLeft reports whether the filesystem still has the problems the check found.
func (r FsckReport) ProblemsLeft() bool { return !r.Clean && !r.Repaired }

// ToolRun is one run of a check or repair tool.
type ToolRun struct {
	Command  string `json:"command"`
	ExitCode int    `json:"exit_code"`
	Output   string `json:"output"`
}

// Check checks the fstype filesystem ("" probes it) on device, which must not be mounted
// anywhere (ErrMounted otherwise): e2fsck -f -n for ext4, xfs_repair -n for xfs. Neither
// writes a byte, and the device is held open exclusively meanwhile, so the kernel refuses to
// mount it under the check. With repair, and only when the check found problems, it then runs
// e2fsck -f -y or xfs_repair (never xfs_repair -L, which throws away the log's metadata) and
// checks again. An error means the tool could not do its job (device unreadable, not that
// filesystem, an xfs log that needs replaying): findings are never an error.
func (l *Linux) Check(ctx context.Context, device, fstype string, repair bool) (FsckReport, error) {
	rep := FsckReport{Device: device, FSType: fstype, Repair: repair, Findings: []string{}}
	dev, err := blockDevice(device)
	if err != nil {
		return rep, fmt.Errorf("check %s: %w", device, err)
	}
	if fstype == "" {
		sig, err := l.Probe(ctx, dev.node)
		if err != nil {
			return rep, fmt.Errorf("check %s: %w", device, err)
		}
		fstype, rep.FSType = sig.Type, sig.Type
	}
	if !supported(fstype) {
		return rep, fmt.Errorf("check %s: %w: %q: supported are %s", device, ErrUnsupportedFilesystem, fstype, strings.Join(supportedFS, ", "))
	}
	excl, err := openExclusive(dev.node)
	if err != nil {
		at, _ := mountedAt(dev)
		if at != "" {
			return rep, fmt.Errorf("check %s: %w at %s: unmount it first", device, ErrMounted, at)
		}
		return rep, fmt.Errorf("check %s: it is in use (mounted in another namespace, or held by another program): %w", device, err)
	}
	run, err := checkOnce(ctx, dev.node, fstype)
	excl.Close()
	if err != nil {
		if hint := logHint(fstype, run.Output); hint != "" {
			return rep, fmt.Errorf("check %s: %s: %w", device, hint, err)
		}
		return rep, fmt.Errorf("check %s: %w", device, err)
	}
	rep.Runs = append(rep.Runs, run)
	rep.Findings = findings(fstype, run.Output)
	rep.Clean = run.ExitCode == 0
	if rep.Clean || !repair {
		return rep, nil
	}
	// Once started, the repair and the check after it run to their end: a Ctrl-C (the caller's
	// context) must not SIGKILL e2fsck -y or xfs_repair half-way through their writes. A caller
	// already out of time starts nothing.
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("repair %s: not started: %w", device, err)
	}
	ctx = context.WithoutCancel(ctx)
	fix := repairCommand(fstype, dev.node)
	out, err := cmdrun.Run(ctx, fix[0], fix[1:]...)
	code := cmdrun.ExitCode(err)
	fixRun := ToolRun{Command: strings.Join(fix, " "), ExitCode: exitOf(err), Output: outputOf(out, err)}
	rep.Runs = append(rep.Runs, fixRun)
	// e2fsck: 1 = errors corrected, 2 = corrected (reboot if it were the root fs); 4 and up: not.
	if err != nil && !(fstype == "ext4" && (code == 1 || code == 2)) {
		if hint := logHint(fstype, fixRun.Output); hint != "" {
			return rep, fmt.Errorf("repair %s: %s: %w", device, hint, err)
		}
		if code < 0 {
			return rep, fmt.Errorf("repair %s: %w", device, err)
		}
	}
	again, err := checkOnce(ctx, dev.node, fstype)
	if err != nil {
		return rep, fmt.Errorf("check %s after the repair: %w", device, err)
	}
	rep.Runs = append(rep.Runs, again)
	rep.Repaired = again.ExitCode == 0
	return rep, nil
}

// checkOnce runs the read-only check. Exit codes that mean "problems found" are results; the
// others (the tool could not run or read the filesystem) are errors.
func checkOnce(ctx context.Context, node, fstype string) (ToolRun, error) {
	argv := checkCommand(fstype, node)
	out, err := cmdrun.Run(ctx, argv[0], argv[1:]...)
	code := cmdrun.ExitCode(err)
	run := ToolRun{Command: strings.Join(argv, " "), ExitCode: exitOf(err), Output: outputOf(out, err)}
	if err == nil {
		return run, nil
	}
	switch {
	case fstype == "ext4" && code == 4: // errors left uncorrected: with -n, every error
		return run, nil
	case fstype == "xfs" && code == 1: // corruption found
		return run, nil
	}
	return run, err
}

// exitOf is a tool's exit code: 0 when it succeeded, -1 when it did not run to an exit.
func exitOf(err error) int {
	if err == nil {
		return 0
	}
	return cmdrun.ExitCode(err)
}

// logHint explains xfs_repair's refusal of a filesystem whose log was not replayed.
func logHint(fstype, output string) string {
	if fstype != "xfs" || !strings.Contains(output, "log") || !strings.Contains(output, "replay") {
		return ""
	}
	return "xfs_repair refused: the filesystem's log holds metadata changes that must be replayed first. Mount it once and unmount it (start and stop a container using the volume), then check again (xfs_repair -L would discard those changes: dockbridge never runs it)"
}

func checkCommand(fstype, node string) []string {
	if fstype == "xfs" {
		return []string{"xfs_repair", "-n", node}
	}
	return []string{"e2fsck", "-f", "-n", node}
}

func repairCommand(fstype, node string) []string {
	if fstype == "xfs" {
		return []string{"xfs_repair", node}
	}
	return []string{"e2fsck", "-f", "-y", node}
}

// outputOf is a tool's combined output: from the error when it failed, else its stdout.
func outputOf(stdout []byte, err error) string {
	var ce *cmdrun.Error
	if errors.As(err, &ce) {
		return ce.Output
	}
	return string(stdout)
}

var (
	e2fsckNoise = regexp.MustCompile(`^(e2fsck \d|Pass \d|.*: \d+/\d+ files \(|.*\*{5,}|[A-Z][A-Za-z ]*\? (no|yes)$|Warning!\s+\S+ is in use\.$)`)
	// A problem and its question share a line ("... has deleted/unused inode 13.  Clear? no").
	e2fsckQuestion = regexp.MustCompile(`\s+[A-Z][A-Za-z ]*\? (no|yes)$`)
	xfsNoise       = regexp.MustCompile(`^(Phase \d|\s+- |No modify flag set|done$|Cannot get host filesystem geometry|Repair may fail if there is a sector size mismatch|the image and the host filesystem)`)
)

// findings picks the problem lines out of a check's output: e2fsck's passes, banner, summary
// and fix questions (and its warning that the device is in use: Check holds it open
// exclusively), and xfs_repair's phases and progress items, are left out.
func findings(fstype, output string) []string {
	out := []string{}
	for _, line := range strings.Split(output, "\n") {
		line = strings.TrimRight(line, " \t\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		switch fstype {
		case "ext4":
			if e2fsckNoise.MatchString(line) {
				continue
			}
			line = e2fsckQuestion.ReplaceAllString(line, "")
		case "xfs":
			if xfsNoise.MatchString(line) {
				continue
			}
		}
		out = append(out, strings.TrimSpace(line))
	}
	return out
}

// mountedAt returns where the device is mounted in this mount namespace, or "".
func mountedAt(dev blockDev) (string, error) {
	entries, err := mountinfo.Read()
	if err != nil {
		return "", fmt.Errorf("read mount table: %w", err)
	}
	for _, e := range entries {
		if e.Major == dev.major && e.Minor == dev.minor {
			return e.MountPoint, nil
		}
	}
	return "", nil
}

// MountsOf lists the mount points of device in this mount namespace (a filesystem may be
// mounted at several places, e.g. bind mounts).
func (l *Linux) MountsOf(device string) ([]string, error) {
	dev, err := blockDevice(device)
	if err != nil {
		return nil, err
	}
	entries, err := mountinfo.Read()
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.Major == dev.major && e.Minor == dev.minor {
			out = append(out, e.MountPoint)
		}
	}
	return out, nil
}
