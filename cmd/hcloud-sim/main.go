// Command hcloud-sim serves a simulated Hetzner Cloud API (and metadata service) that
// hcloud-go and the hcloud CLI use unmodified: HCLOUD_ENDPOINT=http://ADDR/v1.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dockbridge/dockbridge/internal/hcloudsim"
)

func main() {
	var o hcloudsim.Options
	fs := flag.NewFlagSet("hcloud-sim", flag.ExitOnError)
	o.Register(fs)
	_ = fs.Parse(os.Args[1:])

	level := slog.LevelInfo
	if o.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := o.Config(ctx, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hcloud-sim:", err)
		os.Exit(2)
	}
	sim, err := hcloudsim.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hcloud-sim:", err)
		os.Exit(1)
	}
	log.Info("hcloud-sim listening", "api", "http://"+o.Listen+"/v1",
		"metadata", "http://"+o.Listen+"/hetzner/v1/metadata", "backend", o.Backend, "state_dir", o.StateDir)
	err = sim.ListenAndServe(ctx, o.Listen)
	if cerr := sim.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hcloud-sim:", err)
		os.Exit(1)
	}
}
