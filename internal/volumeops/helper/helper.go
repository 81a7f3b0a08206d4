//go:build unix

// Package helper is what runs inside the helper container: the volume is mounted at /data, the
// archive streams on stdin/stdout and a JSON report goes to stderr, one object per line.
// It is entered through Main when the environment has DOCKBRIDGE_HELPER=1 (see Init).
package helper

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/pacing"
)

// Init turns the process into the helper when EnvVar is set; call it first thing in main (the
// CLI plugin's binary is also the helper binary).
func Init() {
	if os.Getenv(EnvVar) == "1" {
		os.Exit(Main(os.Args[1:]))
	}
}

// maxRSS is the helper's peak resident memory.
func maxRSS() int64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return ru.Maxrss * 1024
}

var stderr = json.NewEncoder(os.Stderr)

func warn(s string) { _ = stderr.Encode(Line{Warning: s}) }

func result(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		_ = stderr.Encode(Line{Error: err.Error()})
		return 1
	}
	_ = stderr.Encode(Line{Result: b})
	return 0
}

// Main runs a helper command and returns the exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The helper's memory is bounded by design (the chunks in flight and one output burst); make
	// the GC keep it near that bound instead of letting the heap double.
	debug.SetMemoryLimit(128 << 20)
	// Larger pipe buffers between us and the engine: fewer context switches per MB.
	for _, f := range []*os.File{os.Stdin, os.Stdout} {
		setPipeSize(f, 1<<20)
	}
	if len(args) == 0 {
		_ = stderr.Encode(Line{Error: "helper: no command"})
		return 2
	}
	var err error
	var code int
	switch args[0] {
	case "backup":
		code, err = runBackup(ctx, args[1:])
	case "restore":
		code, err = runRestore(ctx, args[1:])
	case "probe":
		code, err = runProbe(ctx, args[1:])
	default:
		err = fmt.Errorf("helper: unknown command %q", args[0])
	}
	if err != nil {
		_ = stderr.Encode(Line{Error: err.Error()})
		return 1
	}
	return code
}

// burstSize is how much compressed archive the helper gathers before it writes any of it. The
// engine moves the helper's output through two pipes and two copies (runtime shim, engine) in
// 32 KiB pieces. Fed as the compressor produced, the pipes ran empty between pieces and every
// piece woke the shim, the engine and the plugin; written in bursts, the pieces follow each
// other and compression and transport take turns on the cores. On the benchmark's 1.5 GB this
// took the engine's CPU time for a backup from 5-7 s to under 4 s. Memory: one burst, whatever
// the volume's size.
const burstSize = 16 << 20

func runBackup(ctx context.Context, args []string) (int, error) {
	fl := flag.NewFlagSet("backup", flag.ContinueOnError)
	comp := fl.String("compression", "zstd", "")
	metaB64 := fl.String("meta", "", "")
	strict := fl.Bool("strict", false, "")
	if err := fl.Parse(args); err != nil {
		return 0, err
	}
	c, err := backup.ParseCompression(*comp)
	if err != nil {
		return 0, err
	}
	var meta backup.Metadata
	if b, err := base64.StdEncoding.DecodeString(*metaB64); err != nil {
		return 0, fmt.Errorf("decode metadata: %w", err)
	} else if err := json.Unmarshal(b, &meta); err != nil {
		return 0, fmt.Errorf("decode metadata: %w", err)
	}
	if ok, _ := isMountpoint(DataDir); !ok {
		return 0, fmt.Errorf("%s is not a mount point in the helper: the volume was not mounted", DataDir)
	}
	cw := &countWriter{w: os.Stdout}
	bw := bufio.NewWriterSize(cw, burstSize)
	m, st, err := backup.WriteCompressed(ctx, bw, DataDir, meta, c, backup.WriteOptions{Warn: warn, Strict: *strict})
	if err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("write archive: %w", err)
	}
	return result(BackupResult{Metadata: m, Stats: st, CompressedBytes: cw.n, MaxRSSBytes: maxRSS()}), nil
}

func runRestore(ctx context.Context, args []string) (int, error) {
	fl := flag.NewFlagSet("restore", flag.ContinueOnError)
	comp := fl.String("compression", "zstd", "")
	clearFirst := fl.Bool("clear", false, "")
	allowDevices := fl.Bool("allow-devices", false, "")
	if err := fl.Parse(args); err != nil {
		return 0, err
	}
	c, err := backup.ParseCompression(*comp)
	if err != nil {
		return 0, err
	}
	if ok, _ := isMountpoint(DataDir); !ok {
		return 0, fmt.Errorf("%s is not a mount point in the helper: the volume was not mounted", DataDir)
	}
	cleared, err := clearVolume(*clearFirst)
	if err != nil {
		return 0, err
	}
	// From here on the volume changes: whatever fails, it is emptied again, so that a restore
	// that did not complete (a hostile or damaged archive, a checksum the plugin found wrong, a
	// cut stream) never leaves half or corrupt content behind.
	m, st, err := extractChecked(ctx, c, *allowDevices)
	if err != nil {
		if _, cerr := clearVolume(true); cerr != nil {
			return 0, fmt.Errorf("%w (and emptying the volume again failed: %v)", err, cerr)
		}
		return 0, fmt.Errorf("%w (the volume was emptied again)", err)
	}
	// Make it durable before we say it is done.
	if f, err := os.Open(DataDir); err == nil {
		syncfs(f)
		f.Close()
	}
	return result(RestoreResult{Metadata: m, Stats: st, Cleared: cleared, MaxRSS: maxRSS()}), nil
}

// lostFound is the directory mkfs.ext4 makes at the top of a new filesystem (for e2fsck). Empty,
// it is not data: a new ext4 volume counts as empty, and clearing a volume keeps it.
const lostFound = "lost+found"

// emptyLostFound reports whether the top-level entry de is an empty lost+found directory.
func emptyLostFound(de fs.DirEntry) bool {
	if de.Name() != lostFound || !de.IsDir() {
		return false
	}
	des, err := os.ReadDir(filepath.Join(DataDir, lostFound))
	return err == nil && len(des) == 0
}

// clearVolume empties the volume (an empty lost+found stays; what lost+found holds goes) when
// clearFirst, and otherwise fails unless it is empty. It returns how many entries it removed at
// the top.
func clearVolume(clearFirst bool) (int, error) {
	des, err := os.ReadDir(DataDir)
	if err != nil {
		return 0, err
	}
	des = slices.DeleteFunc(des, emptyLostFound)
	if len(des) == 0 {
		return 0, nil
	}
	if !clearFirst {
		return 0, fmt.Errorf("the volume is not empty (%d entries at its top): refusing to restore over it", len(des))
	}
	cleared := 0
	for _, de := range des {
		p := filepath.Join(DataDir, de.Name())
		if de.Name() == lostFound && de.IsDir() {
			inner, err := os.ReadDir(p)
			if err != nil {
				return cleared, fmt.Errorf("clear the volume: %w", err)
			}
			for _, in := range inner {
				if err := os.RemoveAll(filepath.Join(p, in.Name())); err != nil {
					return cleared, fmt.Errorf("clear the volume: %w", err)
				}
			}
		} else if err := os.RemoveAll(p); err != nil {
			return cleared, fmt.Errorf("clear the volume: %w", err)
		}
		cleared++
	}
	return cleared, nil
}

// extractChecked extracts the framed archive on stdin into the volume and returns only after
// the plugin confirmed the archive's checksum (see FrameReader).
func extractChecked(ctx context.Context, c backup.Compression, allowDevices bool) (backup.Metadata, backup.Stats, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(DataDir, &sfs); err != nil {
		return backup.Metadata{}, backup.Stats{}, fmt.Errorf("statfs %s: %w", DataDir, err)
	}
	room := int64(sfs.Bavail) * int64(sfs.Bsize)
	if os.Geteuid() == 0 {
		room = int64(sfs.Bfree) * int64(sfs.Bsize)
	}
	// The runtime shim writes the archive into stdin 4 KiB at a time; paced, the helper takes
	// it in reads of about 128 KiB instead of being woken for every piece.
	fr := NewFrameReader(bufio.NewReaderSize(&pacing.Reader{R: os.Stdin}, 1<<20))
	m, st, err := backup.ExtractCompressed(ctx, fr, c, DataDir, backup.ExtractOptions{
		MaxBytes: room, AllowDevices: allowDevices, Chown: os.Geteuid() == 0, Warn: warn,
	})
	if err != nil {
		return m, st, err
	}
	// The archive ends with the codec's stream; anything after it is still the plugin's to hash.
	if _, err := io.Copy(io.Discard, fr); err != nil {
		return m, st, fmt.Errorf("read end of archive: %w", err)
	}
	return m, st, fr.Verdict()
}

func runProbe(ctx context.Context, args []string) (int, error) {
	fl := flag.NewFlagSet("probe", flag.ContinueOnError)
	writeTest := fl.Bool("write-test", false, "")
	if err := fl.Parse(args); err != nil {
		return 0, err
	}
	var r ProbeResult
	r.Mounted, r.FSType = isMountpoint(DataDir)
	var sfs unix.Statfs_t
	if err := unix.Statfs(DataDir, &sfs); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", DataDir, err)
	}
	r.TotalBytes = sfs.Blocks * uint64(sfs.Bsize)
	r.FreeBytes = sfs.Bavail * uint64(sfs.Bsize)
	r.TotalInodes, r.FreeInodes = sfs.Files, sfs.Ffree
	seen := map[uint64]bool{}
	err := filepath.WalkDir(DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return nil // vanished
		}
		st := fi.Sys().(*syscall.Stat_t)
		if filepath.Dir(p) == DataDir && emptyLostFound(d) {
			r.UsedBytes += st.Blocks * 512
			return fs.SkipDir // the filesystem's own, not an entry
		}
		if p != DataDir {
			r.Entries++
		}
		if st.Nlink > 1 && !fi.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		r.UsedBytes += st.Blocks * 512
		if fi.Mode().IsRegular() {
			r.Files++
			r.FileBytes += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measure %s: %w", DataDir, err)
	}
	if *writeTest {
		if err := writeProbe(); err != nil {
			r.WriteError = err.Error()
		} else {
			r.Writable = true
		}
	}
	return result(r), nil
}

func writeProbe() error {
	f, err := os.CreateTemp(DataDir, ".dockbridge-write-test-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write([]byte("dockbridge")); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// isMountpoint reads /proc/self/mountinfo.
func isMountpoint(dir string) (bool, string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 10 || fields[4] != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				return true, fields[i+1]
			}
		}
		return true, ""
	}
	return false, ""
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// The CLI plugin's binary is also the helper binary: importing this package is enough.
func init() { Init() }
