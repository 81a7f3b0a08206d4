package schedule

import (
	"fmt"
	"strings"
	"time"
)

// The host's timer: one service that runs every backup that is due, started every minute. The
// schedules themselves are data (schedules.json on the data volume), so a new server after
// `down`/`up` needs only these two files again, and a missed slot (the server was gone) runs
// at the first tick after it is back.
const (
	ServiceUnit = "dockbridge-backup.service"
	TimerUnit   = "dockbridge-backup.timer"
	UnitDir     = "/etc/systemd/system"
)

// HostUnits are the service and timer units for the server binary at binary, whose backup
// directory lives under mountPoint.
func HostUnits(binary, mountPoint string) (service, timer string) {
	service = fmt.Sprintf(`# Written by docker dockbridge (backup schedule, up): runs the scheduled backups that are due.
[Unit]
Description=dockbridge: run the scheduled backups that are due (docker dockbridge backup schedule ls)
After=docker.service network-online.target
Wants=network-online.target
RequiresMountsFor=%[2]s
ConditionPathExists=%[1]s

[Service]
Type=oneshot
ExecStart=%[1]s backup run-due
Nice=10
# SIGTERM stops a backup cleanly (its archive is never listed, its containers are started
# again); anything left gets SIGKILL after the timeout.
KillMode=mixed
TimeoutStopSec=5min
`, binary, mountPoint)
	timer = `# Written by docker dockbridge (backup schedule, up).
[Unit]
Description=dockbridge: look every minute for scheduled backups that are due

[Timer]
OnCalendar=*-*-* *:*:00
AccuracySec=1s

[Install]
WantedBy=timers.target
`
	return service, timer
}

// LocalCommands are the commands a scheduled backup runs where no dockbridge host is: the
// backup, then the retention (only when the backup succeeded). cli is how docker is called
// (e.g. "/usr/bin/docker --context prod").
func LocalCommands(s Schedule, cli string) []string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s dockbridge backup", cli)
	if s.All {
		b.WriteString(" --all")
	} else {
		for _, v := range s.Volumes {
			b.WriteString(" " + shq(v))
		}
	}
	fmt.Fprintf(&b, " --to %s --label %s", shq(s.To), shq(s.ID))
	store := ""
	if s.S3.Endpoint != "" {
		store += " --s3-endpoint " + shq(s.S3.Endpoint)
	}
	if s.S3.Region != "" {
		store += " --s3-region " + shq(s.S3.Region)
	}
	b.WriteString(store)
	if s.S3.PartSize != 0 && strings.HasPrefix(s.To, "s3://") {
		fmt.Fprintf(&b, " --s3-part-size %dMiB", s.S3.PartSize>>20)
	}
	if s.Compression != "" && s.Compression != "zstd" {
		b.WriteString(" --compression " + s.Compression)
	}
	for _, r := range s.EncryptTo {
		b.WriteString(" --encrypt-to " + shq(r))
	}
	if s.KeepRunning {
		b.WriteString(" --keep-running")
	}
	prune := fmt.Sprintf("%s dockbridge backup prune --from %s%s %s --force", cli, shq(s.To), store, s.Retention.Policy())
	return []string{b.String(), prune}
}

// shq quotes a word for a shell (and for systemd's ExecStart, which splits the same way).
func shq(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@+,%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// onCalendar is systemd's OnCalendar= for an interval that divides a day, an hour or a week
// evenly, "" for any other.
func onCalendar(d time.Duration) string {
	switch {
	case d == 7*24*time.Hour:
		return "weekly"
	case d == 24*time.Hour:
		return "daily"
	case d%time.Hour == 0 && (24*time.Hour)%d == 0:
		return fmt.Sprintf("*-*-* 00/%d:00:00", d/time.Hour)
	case d%time.Minute == 0 && time.Hour%d == 0:
		return fmt.Sprintf("*-*-* *:00/%d:00", d/time.Minute)
	}
	return ""
}

// LocalInstructions is what `backup schedule` prints for an engine that is not a dockbridge
// host: a systemd service and timer (--every) or a cron line (--cron), ready to install,
// running the CLI on this machine.
func LocalInstructions(s Schedule, cli string) string {
	cmds := LocalCommands(s, cli)
	unit := "dockbridge-backup-" + s.ID
	creds := ""
	if strings.HasPrefix(s.To, "s3://") {
		creds = fmt.Sprintf("\nThe S3 credentials are not printed: put AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=... in\n/etc/dockbridge/%s.env (root, 0600).\n", unit)
	}
	var b strings.Builder
	if s.Cron != "" {
		fmt.Fprintf(&b, "# This engine is not a dockbridge host: the schedule runs here, from cron. Save as\n# /etc/cron.d/%s (cron uses this machine's time zone; the expression was meant as %s):\n", unit, s.When())
		env := ""
		if creds != "" {
			env = fmt.Sprintf(". /etc/dockbridge/%s.env && export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY && ", unit)
		}
		expr := strings.TrimSpace(s.Cron)
		if strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=") {
			tz, rest, _ := strings.Cut(expr, " ")
			fmt.Fprintf(&b, "%s\n", strings.Replace(tz, "TZ=", "CRON_TZ=", 1))
			expr = strings.TrimSpace(rest)
		}
		fmt.Fprintf(&b, "%s root %s%s && %s\n", expr, env, cmds[0], cmds[1])
		b.WriteString(creds)
		return b.String()
	}
	fmt.Fprintf(&b, "# This engine is not a dockbridge host: the schedule runs here, from a systemd timer.\n")
	fmt.Fprintf(&b, "# /etc/systemd/system/%s.service\n[Unit]\nDescription=docker dockbridge: back up %s to %s\nAfter=docker.service network-online.target\nWants=network-online.target\n\n[Service]\nType=oneshot\n", unit, s.What(), s.To)
	if creds != "" {
		fmt.Fprintf(&b, "EnvironmentFile=/etc/dockbridge/%s.env\n", unit)
	}
	for _, c := range cmds {
		fmt.Fprintf(&b, "ExecStart=%s\n", c)
	}
	fmt.Fprintf(&b, "\n# /etc/systemd/system/%s.timer\n[Unit]\nDescription=docker dockbridge: back up %s %s\n\n[Timer]\n", unit, s.What(), s.When())
	every := time.Duration(s.Every)
	if cal := onCalendar(every); cal != "" {
		fmt.Fprintf(&b, "OnCalendar=%s\nPersistent=true\n", cal)
	} else {
		fmt.Fprintf(&b, "OnBootSec=%s\nOnUnitActiveSec=%s\n", shortDuration(min(every, time.Hour)), shortDuration(every))
	}
	fmt.Fprintf(&b, "\n[Install]\nWantedBy=timers.target\n\n# then: systemctl daemon-reload && systemctl enable --now %s.timer\n", unit)
	b.WriteString(creds)
	return b.String()
}
