// Command hcloud-sim serves a simulated Hetzner Cloud API (and metadata service) that
// hcloud-go and the hcloud CLI use unmodified: HCLOUD_ENDPOINT=http://ADDR/v1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		usage(os.Stdout)
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hcloud-sim:", err)
		os.Exit(1)
	}
}

// flags are the simulator's options (Options.Register).
func flags(o *hcloudsim.Options) *flag.FlagSet {
	fs := flag.NewFlagSet("hcloud-sim", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run reports errors once, usage prints the help
	fs.Usage = func() {}
	o.Register(fs)
	return fs
}

// usage prints the help, every option written --name as in the READMEs (Go's flag package
// takes -name and --name alike).
func usage(w io.Writer) {
	fs := flags(&hcloudsim.Options{})
	fmt.Fprint(w, "Usage: hcloud-sim [OPTIONS]\n\nServe a simulated Hetzner Cloud API (HCLOUD_ENDPOINT=http://ADDR/v1) and metadata service.\n\nOptions:\n")
	fs.VisitAll(func(f *flag.Flag) {
		name, text := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			text += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, strings.ReplaceAll(text, "\n", "\n      "))
	})
}

// run parses args, starts the simulator and serves until ctx ends. --help is flag.ErrHelp.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	var o hcloudsim.Options
	fs := flags(&o)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w (hcloud-sim --help lists the options)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: hcloud-sim takes only options, written --name VALUE (hcloud-sim --help lists them)", fs.Arg(0))
	}
	level := slog.LevelInfo
	if o.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	cfg, err := o.Config(ctx, log)
	if err != nil {
		return err
	}
	sim, err := hcloudsim.New(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("hcloud-sim listening", "api", "http://"+o.Listen+"/v1",
		"metadata", "http://"+o.Listen+"/hetzner/v1/metadata", "backend", o.Backend, "state_dir", o.StateDir)
	err = sim.ListenAndServe(ctx, o.Listen)
	if cerr := sim.Close(); err == nil {
		err = cerr
	}
	return err
}
