package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockbridge/dockbridge/internal/host"
	"github.com/dockbridge/dockbridge/internal/schedule"
	"github.com/dockbridge/dockbridge/internal/ui"
)

func statusCmd(d deps) *cobra.Command {
	var hf hostFlags
	return spec[*host.Status]{
		Use:     "status [OPTIONS]",
		Short:   "Show the server, its cost so far, the data volume and the last health check",
		Formats: tableOrJSON,
		Flags:   func(cmd *cobra.Command, _ *pflag.FlagSet) { hf.add(cmd) },
		Run:     onHost(d, &hf, host.GetStatus),
		Print:   func(w io.Writer, _ string, st *host.Status) error { return printStatus(w, st) },
	}.build(d.out)
}

func printStatus(w io.Writer, st *host.Status) error {
	kv := [][2]string{
		{"Environment", st.Env},
		{"Context", fmt.Sprintf("%s (%s)", st.Context, st.Host)},
	}
	if s := st.Server; s != nil {
		kv = append(kv,
			[2]string{"Server", fmt.Sprintf("%s (id %d)", s.Name, s.ID)},
			[2]string{"  Status", s.Status},
			[2]string{"  Type", fmt.Sprintf("%s in %s", s.Type, s.Location)},
			[2]string{"  IPv4", s.IPv4},
			[2]string{"  Uptime", (time.Duration(s.UptimeSeconds) * time.Second).String()},
		)
		if s.Currency != "" {
			kv = append(kv, [2]string{"  Price", fmt.Sprintf("%.4f %s/hour; %.4f %s so far (%d started hours)", s.PricePerHour, s.Currency, s.CostSoFar, s.Currency, s.BilledHours)})
		}
	} else {
		kv = append(kv, [2]string{"Server", "none (nothing billed for compute)"})
	}
	if v := st.Volume; v != nil {
		att := "detached"
		if v.AttachedTo != 0 {
			att = fmt.Sprintf("attached to server %d", v.AttachedTo)
		}
		kv = append(kv, [2]string{"Volume", fmt.Sprintf("%s (id %d), %d GB in %s, %s", v.Name, v.ID, v.SizeGB, v.Location, att)})
		if v.TotalBytes > 0 {
			kv = append(kv, [2]string{"  Usage", fmt.Sprintf("%s of %s (%.1f%%)", units.BytesSize(float64(v.UsedBytes)), units.BytesSize(float64(v.TotalBytes)), v.UsedPct)})
		}
	} else {
		kv = append(kv, [2]string{"Volume", "none"})
	}
	kv = append(kv, [2]string{"Health", st.Health})
	if b := st.Backups; b != nil {
		for _, v := range b.Volumes {
			kv = append(kv, [2]string{"Backup " + v.Volume, backupSummary(b.Now, v)})
		}
		for _, v := range b.Unscheduled {
			kv = append(kv, [2]string{"Backup " + v, "no schedule (docker dockbridge backup schedule --help)"})
		}
	}
	kv = append(kv, idleRows(st, time.Now())...)
	for _, n := range st.Notes {
		kv = append(kv, [2]string{"Note", n})
	}
	return ui.KeyValues(w, kv)
}

// backupSummary is one volume's backup state on one line.
func backupSummary(now time.Time, v schedule.VolumeStatus) string {
	parts := []string{v.Level}
	if v.LastSuccess.IsZero() {
		parts = append(parts, "no backup yet")
	} else {
		parts = append(parts, fmt.Sprintf("last %s ago (%s, %.1fs)", ago(now, v.LastSuccess), humanBytes(v.LastSizeBytes), v.LastDurationSeconds))
	}
	if v.ConsecutiveFailures > 0 {
		parts = append(parts, fmt.Sprintf("%s in a row: %s", plural(v.ConsecutiveFailures, "failure", "failures"), v.LastError))
	}
	if !v.NextRun.IsZero() {
		parts = append(parts, "next "+until(now, v.NextRun))
	}
	switch {
	case v.DrillError != "":
		parts = append(parts, "restore drill FAILED: "+v.DrillError)
	case !v.LastRestoreVerified.IsZero():
		parts = append(parts, "restore verified "+ago(now, v.LastRestoreVerified)+" ago")
	}
	return strings.Join(parts, ", ") + fmt.Sprintf("; schedule %s, %s to %s", v.Schedule, v.When, v.To)
}

// idleRows say whether the server is idle, since when, what keeps it up and when it goes down.
func idleRows(st *host.Status, now time.Time) [][2]string {
	ago := func(t time.Time) string {
		return fmt.Sprintf("%s (%s ago)", t.Local().Format("15:04:05"), now.Sub(t).Round(time.Second))
	}
	in := func(t time.Time) string {
		return fmt.Sprintf("%s (in %s)", t.Local().Format("15:04:05"), t.Sub(now).Round(time.Second))
	}
	timeout := "idle timeout " + st.IdleTimeout
	if st.Server == nil {
		return [][2]string{{"Idle", "no server (" + timeout + ")"}}
	}
	var rows [][2]string
	switch {
	case len(st.KeepingUp) > 0:
		rows = append(rows, [2]string{"Idle", "no (" + timeout + ")"})
		for _, r := range st.KeepingUp {
			rows = append(rows, [2]string{"  Kept up by", r})
		}
	case st.IdleSince != nil:
		rows = append(rows, [2]string{"Idle", "since " + ago(*st.IdleSince) + " (" + timeout + ")"})
	default:
		rows = append(rows, [2]string{"Idle", "unknown (" + timeout + ")"})
	}
	switch {
	case st.DownAt != nil:
		rows = append(rows, [2]string{"Goes down", in(*st.DownAt) + ", before its paid hour ends, if nothing happens until then"})
	case st.IdleTimeout == "off":
		rows = append(rows, [2]string{"Goes down", "never by itself (idle timeout off): `docker dockbridge down`"})
	}
	return rows
}
