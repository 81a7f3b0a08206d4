package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/ui"
)

// wakeTTYEnv names the file descriptor of the controlling terminal the wake's detached process
// writes to (it has none of its own after setsid).
const wakeTTYEnv = "DOCKBRIDGE_WAKE_TTY_FD"

// wakeCmd is what the environment's ssh_config runs before ssh connects (host/wake.go): it
// returns at once when the server is up, else brings it up and returns when it is. Hidden: a
// person runs `up`.
func wakeCmd(d deps) *cobra.Command {
	var env string
	var run bool
	cmd := spec[*struct{}]{
		Use:   "wake [OPTIONS]",
		Short: "Bring the environment's server up when it is down (ssh runs this before it connects)",
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			f.StringVar(&env, "name", host.DefaultEnv, "environment name")
			f.BoolVar(&run, "run", false, "be the wake's detached process (the wake starts it)")
			_ = f.MarkHidden("run")
		},
		Run: func(ctx context.Context, _ *cobra.Command, _ []string) (*struct{}, error) {
			if run {
				return nil, wakeRun(ctx, d, env)
			}
			return nil, wake(ctx, d, env)
		},
	}.build(d.out)
	cmd.Hidden = true
	return cmd
}

// wake is the caller's side: the server up (no API request), or one wake for all callers.
func wake(ctx context.Context, d deps, env string) error {
	start := time.Now()
	hd, err := d.host(hostFlags{env: env}, host.Flags{}, false)
	if err != nil {
		return err
	}
	if host.ServerUp(ctx, hd, env, 5*time.Minute) {
		return nil
	}
	lock, err := os.OpenFile(hd.Paths.WakeLockFile(env), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("the wake's lock: %w", err)
	}
	defer lock.Close()
	tty := userTerminal()
	if tty != nil {
		defer tty.Close()
	}
	if !tryLock(lock) {
		if tty != nil {
			fmt.Fprintf(tty, "dockbridge: waiting for the wake of environment %q already under way...\r\n", env)
		}
		if err := waitLock(ctx, lock); err != nil {
			return fmt.Errorf("wait for the wake under way: %w", err)
		}
	}
	// The wake waited for may have brought the server up.
	if last, err := host.LastWake(hd.Paths, env); err == nil && last.Started.After(start.Add(-time.Second)) && last.Error != "" {
		return fmt.Errorf("waking environment %q failed: %s", env, last.Error)
	}
	if host.ServerUp(ctx, hd, env, 5*time.Minute) {
		return nil
	}
	// The wake itself, in a process of its own that holds the lock: docker may kill this one.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(hd.Paths.WakeLogFile(env), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n%s wake of environment %q\n", time.Now().UTC().Format(time.RFC3339), env)
	cmd := exec.Command(self, "wake", "--name", env, "--run")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{lock}
	cmd.Env = os.Environ()
	if tty != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, tty)
		cmd.Env = append(cmd.Env, wakeTTYEnv+"=4")
	}
	detach(cmd)
	if err := cmd.Run(); err != nil {
		if last, lerr := host.LastWake(hd.Paths, env); lerr == nil && last.Error != "" && !last.Started.Before(start.Add(-time.Second)) {
			return fmt.Errorf("waking environment %q failed: %s", env, last.Error)
		}
		return fmt.Errorf("waking environment %q failed (%v): see %s", env, err, hd.Paths.WakeLogFile(env))
	}
	return nil
}

// wakeRun is the wake's detached process: up as the environment's last up, progress into the
// log (its stderr) and a line on the terminal.
func wakeRun(ctx context.Context, d deps, env string) error {
	start := time.Now()
	var tty *os.File
	if fd, err := strconv.Atoi(os.Getenv(wakeTTYEnv)); err == nil {
		tty = os.NewFile(uintptr(fd), "tty")
	}
	paths, err := hostPaths()
	if err != nil {
		return err
	}
	es, err := host.LoadEnvSettings(paths, env)
	var hd *host.Deps
	if err == nil {
		var flags host.Flags
		if es.Up != nil {
			flags = es.Up.Flags
		}
		hd, err = d.host(hostFlags{env: env, endpoint: flags.Endpoint, tokenFile: flags.TokenFile}, flags, true)
	}
	if err != nil {
		host.RecordWakeFailure(paths, env, start, err)
		if tty != nil {
			fmt.Fprintf(tty, "dockbridge: cannot bring environment %q up: %v\r\n", env, err)
		}
		return err
	}
	hd.Progress = ui.NewProgress(os.Stderr, false)
	if tty != nil {
		return host.WakeRun(ctx, hd, env, tty)
	}
	return host.WakeRun(ctx, hd, env, nil)
}

// userTerminal is where the user sees the wake: the controlling terminal, or else (docker runs
// its ssh in a session of its own, without one) where the program that runs ssh writes its own
// messages, its stderr (appending, when it is a file). nil when neither is found.
func userTerminal() *os.File {
	if f, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		return f
	}
	if pid := sshCaller(); pid > 0 {
		if f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/2", pid), os.O_WRONLY|os.O_APPEND, 0); err == nil {
			return f
		}
	}
	return nil
}
