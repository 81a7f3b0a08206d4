// Command hcloud-sim serves a simulated Hetzner Cloud API (and metadata service) that
// hcloud-go and the hcloud CLI use unmodified: HCLOUD_ENDPOINT=http://ADDR/v1.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hcloud-sim:", err)
		os.Exit(1)
	}
}

// run parses args, starts the simulator and serves until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	var o hcloudsim.Options
	fs := flag.NewFlagSet("hcloud-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
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
