package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/schedule"
	"github.com/dockbridge/dockbridge/internal/volumeops"
)

// metricsCmd is `docker dockbridge metrics`.
func metricsCmd(d deps) *cobra.Command {
	var (
		sf       storeFlags
		textfile string
		backups  string
		noUsage  bool
		// noSchedules skips asking a dockbridge host for its schedules' state over SSH
		noSchedules bool
	)
	return spec[*volumeops.Metrics]{
		Use:     "metrics [OPTIONS]",
		Short:   "Print volume and backup metrics (Prometheus text or JSON), or write a node_exporter textfile",
		Example: `  docker dockbridge metrics --backups s3://my-bucket/host1 --textfile /var/lib/node_exporter/textfile/dockbridge.prom`,
		Formats: []string{"prometheus", "json"},
		Flags: func(cmd *cobra.Command, f *pflag.FlagSet) {
			f.StringVar(&textfile, "textfile", "", "write the Prometheus text atomically to this file (node_exporter textfile collector)")
			f.StringVar(&backups, "backups", "", "a directory or s3://bucket/prefix to report backup metrics for")
			f.BoolVar(&noUsage, "no-usage", false, "skip measuring each volume's used bytes and files (no helper containers)")
			f.BoolVar(&noSchedules, "no-schedules", false, "on a dockbridge host, skip the scheduled backups' state (asked over SSH)")
			sf.add(f, false)
			completeFlag(cmd, "textfile", completeFiles)
			completeFlag(cmd, "backups", completeDirs)
		},
		Run: func(ctx context.Context, _ *cobra.Command, _ []string) (*volumeops.Metrics, error) {
			e, err := d.engine()
			if err != nil {
				return nil, err
			}
			opts := volumeops.MetricsOptions{Usage: !noUsage}
			if backups != "" {
				if opts.Store, err = sf.open(ctx, backups); err != nil {
					return nil, err
				}
			}
			m, err := e.CollectMetrics(ctx, opts)
			if err != nil {
				return nil, err
			}
			// On a dockbridge host, the scheduled backups' state is the server's (duration,
			// failures in a row, last verified restore, health).
			if env, ok := envOfContext(e.Context); ok && !noSchedules {
				hd, herr := d.host(hostFlags{env: env}, host.Flags{}, false)
				var st *schedule.Status
				if herr == nil {
					st, herr = host.BackupStatus(ctx, hd, env)
				}
				if herr != nil {
					fmt.Fprintf(d.errOut, "warning: the scheduled backups' metrics of %s: %v\n", env, herr)
				} else if st != nil {
					m.Backups = append(m.Backups, st.Metrics()...)
				}
			}
			if textfile != "" {
				if err := m.WriteTextfile(textfile); err != nil {
					return nil, err
				}
				fmt.Fprintf(d.errOut, "Wrote %s\n", textfile)
				return nil, nil
			}
			return &m, nil
		},
		Print: func(w io.Writer, _ string, m *volumeops.Metrics) error { return m.WritePrometheus(w) },
	}.build(d.out)
}
