package cli

import (
	"strings"
	"testing"
)

// On an engine that is not a dockbridge host, backup schedule prints what to install; bad
// schedules are refused before anything is touched.
func TestBackupScheduleLocal(t *testing.T) {
	isolate(t)
	t.Setenv("DOCKER_HOST", "unix:///nonexistent.sock") // nothing is asked of an engine
	t.Setenv("DOCKBRIDGE_BACKUP_TO", "")
	out, _, err := run(t, "", "backup", "schedule", "db", "--to", "/srv/backups", "--every", "24h")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/etc/systemd/system/dockbridge-backup-db.timer", "OnCalendar=daily",
		"dockbridge backup db --to /srv/backups --label db", "dockbridge backup prune --from /srv/backups --keep-daily 7 --keep-weekly 4 --keep-monthly 6 --force"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, "", "backup", "schedule", "--all", "--to", "s3://b/h", "--cron", "15 2 * * *", "--keep-last", "3", "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "15 2 * * * root . /etc/dockbridge/dockbridge-backup-all.env") || !strings.Contains(out, "--keep-last 3 --force") {
		t.Errorf("cron line:\n%s", out)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"backup", "schedule", "--to", "/x", "--every", "1h"}, "name the volumes"},
		{[]string{"backup", "schedule", "a", "b", "--to", "/x", "--every", "1h"}, "--id NAME"},
		{[]string{"backup", "schedule", "a", "--to", "/x"}, "--every DURATION"},
		{[]string{"backup", "schedule", "a", "--to", "/x", "--every", "1h", "--cron", "@daily"}, "one of them"},
		{[]string{"backup", "schedule", "a", "--to", "/x", "--cron", "61 * * * *"}, "five fields"},
		{[]string{"backup", "schedule", "a", "--every", "1h"}, "where to?"},
		{[]string{"backup", "schedule", "a", "--to", "/x", "--every", "1h", "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0"}, "prune without a rule"},
		{[]string{"backup", "schedule", "a", "--to", "s3://b/p", "--every", "1h", "--name", "prod"}, "has no server this machine knows of"},
		{[]string{"backup", "schedule", "ls"}, "is not a dockbridge host"},
		{[]string{"backup", "schedule", "rm", "x", "y"}, "requires 1 argument"},
	} {
		_, _, err := run(t, "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
