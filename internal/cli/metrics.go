package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"

	"github.com/dockbridge/dockbridge/internal/backup"
	"github.com/dockbridge/dockbridge/internal/ui"
	"github.com/dockbridge/dockbridge/internal/volumeops"
)

// newMetricsCommand is `docker dockbridge metrics`.
func newMetricsCommand(dockerCli command.Cli) *cobra.Command {
	return metricsCmd(volumeDepsFrom(dockerCli))
}

func metricsCmd(d volumeDeps) *cobra.Command {
	var (
		sf       storeFlags
		output   string
		textfile string
		backups  string
		noUsage  bool
	)
	cmd := &cobra.Command{
		Use:     "metrics [OPTIONS]",
		Short:   "Print volume and backup metrics (Prometheus text or JSON), or write a node_exporter textfile",
		Example: `  docker dockbridge metrics --backups s3://my-bucket/host1 --textfile /var/lib/node_exporter/textfile/dockbridge.prom`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := strings.ToLower(output)
			if out != "prometheus" && out != "json" {
				return fmt.Errorf("output format %q: use -o prometheus or -o json", output)
			}
			e, err := d.engine()
			if err != nil {
				return err
			}
			ctx, cancel := interruptible(cmd)
			defer cancel()
			opts := volumeops.MetricsOptions{Usage: !noUsage}
			if backups != "" {
				if opts.Store, err = openStore(ctx, &sf, backups); err != nil {
					return err
				}
			}
			m, err := e.CollectMetrics(ctx, opts)
			if err != nil {
				return err
			}
			if textfile != "" {
				if err := m.WriteTextfile(textfile); err != nil {
					return err
				}
				fmt.Fprintf(d.errOut, "Wrote %s\n", textfile)
				return nil
			}
			if out == "json" {
				return ui.JSON(d.out, m)
			}
			return m.WritePrometheus(d.out)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "prometheus", "output format: prometheus or json")
	f.StringVar(&textfile, "textfile", "", "write the Prometheus text atomically to this file (node_exporter textfile collector)")
	f.StringVar(&backups, "backups", "", "a directory or s3://bucket/prefix to report backup metrics for")
	f.BoolVar(&noUsage, "no-usage", false, "skip measuring each volume's used bytes and files (no helper containers)")
	sf.add(f)
	return cmd
}

func openStore(ctx context.Context, sf *storeFlags, loc string) (backup.Store, error) {
	return sf.open(ctx, loc)
}
