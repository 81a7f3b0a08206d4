package volumefs

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// ReportPath is where the server binary keeps the last fsck report on the server, for when
// the SSH session that asked for it was lost.
const ReportPath = "/var/log/dockbridge-fsck.json"

// reportPath is ReportPath; tests change it.
var reportPath = ReportPath

// Main is the server binary's `disk` command (hetzner-volume-plugin disk grow|fsck ...), run as
// root on the server over SSH. It prints one JSON object on stdout: {"grow": ...},
// {"fsck": ...}, and "error" when it failed. It returns the exit code.
//
// A lost SSH session does not stop it halfway: SIGHUP, SIGPIPE, SIGINT and SIGTERM are
// ignored, so an fsck of the data volume always ends with the volume mounted and Docker
// started again (or says why not in ReportPath).
func Main(args []string, stdout io.Writer) int {
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE, syscall.SIGINT, syscall.SIGTERM)
	var rep reply
	err := run(context.Background(), Local(), args, &rep)
	if err != nil {
		rep.Error = err.Error()
	}
	b, _ := json.Marshal(rep)
	fmt.Fprintf(stdout, "%s\n", b)
	if rep.Fsck != nil {
		_ = os.WriteFile(reportPath, append(b, '\n'), 0o644)
	}
	if err != nil {
		return 1
	}
	return 0
}

func run(ctx context.Context, s Server, args []string, rep *reply) error {
	if len(args) == 0 {
		return fmt.Errorf("disk: no command (grow or fsck)")
	}
	fs := flag.NewFlagSet("disk "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	device := fs.String("device", "", "the volume's device")
	fstype := fs.String("fstype", "", "ext4 or xfs (default: probe)")
	mountpoint := fs.String("mountpoint", "", "grow: where it is mounted")
	repair := fs.Bool("repair", false, "fsck: repair what the check finds")
	data := fs.Bool("data", false, "fsck: the data volume under Docker's data root")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("disk %s: %w", args[0], err)
	}
	if *device == "" || fs.NArg() > 0 {
		return fmt.Errorf("disk %s: --device is required, and nothing else", args[0])
	}
	var err error
	switch args[0] {
	case "grow":
		rep.Grow, err = s.Grow(ctx, GrowRequest{Device: *device, Mountpoint: *mountpoint, FSType: *fstype})
	case "fsck":
		rep.Fsck, err = s.Fsck(ctx, FsckRequest{Device: *device, FSType: *fstype, Repair: *repair, Data: *data})
	default:
		return fmt.Errorf("disk: unknown command %q (grow or fsck)", args[0])
	}
	return err
}

// Args are the server binary's arguments for a request (after "disk").
func (r GrowRequest) Args() []string {
	a := []string{"grow", "--device", r.Device}
	if r.Mountpoint != "" {
		a = append(a, "--mountpoint", r.Mountpoint)
	}
	if r.FSType != "" {
		a = append(a, "--fstype", r.FSType)
	}
	return a
}

// Args are the server binary's arguments for a request (after "disk").
func (r FsckRequest) Args() []string {
	a := []string{"fsck", "--device", r.Device}
	if r.FSType != "" {
		a = append(a, "--fstype", r.FSType)
	}
	if r.Repair {
		a = append(a, "--repair")
	}
	if r.Data {
		a = append(a, "--data")
	}
	return a
}

// ParseReply reads what the server binary printed: the result, and its error if it failed.
func ParseReply(out []byte) (*GrowResult, *FsckResult, error) {
	var rep reply
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, nil, fmt.Errorf("the server's disk tool answered %q: %w", truncate(string(out), 300), err)
	}
	if rep.Error != "" {
		return rep.Grow, rep.Fsck, &ServerError{Msg: rep.Error}
	}
	return rep.Grow, rep.Fsck, nil
}

// ServerError is an error the disk tool reported from the server.
type ServerError struct{ Msg string }

func (e *ServerError) Error() string { return e.Msg }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
