package cloudinit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HealthLevel is the verdict of one docker-volume-health-check run.
type HealthLevel string

// Health levels, from best to worst.
const (
	HealthOK       HealthLevel = "OK"
	HealthWarning  HealthLevel = "WARNING"
	HealthCritical HealthLevel = "CRITICAL"
)

// HealthRecord is one line of HealthLogPath. The line format is stable:
//
//	<UTC RFC 3339 time> level=<OK|WARNING|CRITICAL> mount=<path> used_pct=<int> size_bytes=<int> used_bytes=<int> avail_bytes=<int> warn_pct=<int> crit_pct=<int> msg="<text>"
//
// Numbers that could not be measured (volume not mounted) are -1. msg holds no double quote.
type HealthRecord struct {
	Time       time.Time
	Level      HealthLevel
	MountPoint string
	UsedPct    int
	SizeBytes  int64
	UsedBytes  int64
	AvailBytes int64
	WarnPct    int
	CritPct    int
	Message    string
}

// ParseHealthLine parses one line written by docker-volume-health-check.
func ParseHealthLine(line string) (HealthRecord, error) {
	var r HealthRecord
	line = strings.TrimRight(line, "\r\n")
	ts, rest, ok := strings.Cut(line, " ")
	if !ok {
		return r, fmt.Errorf("parse health line %q: no fields after the time", line)
	}
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		return r, fmt.Errorf("parse health line %q: time: %w", line, err)
	}
	r.Time = t
	head, msg, ok := strings.Cut(rest, ` msg="`)
	if !ok || !strings.HasSuffix(msg, `"`) {
		return r, fmt.Errorf("parse health line %q: missing msg=\"...\" at the end", line)
	}
	r.Message = strings.TrimSuffix(msg, `"`)

	fields := map[string]string{}
	for _, f := range strings.Fields(head) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return r, fmt.Errorf("parse health line %q: field %q is not key=value", line, f)
		}
		fields[k] = v
	}
	need := func(k string) (string, error) {
		v, ok := fields[k]
		if !ok {
			return "", fmt.Errorf("parse health line %q: missing %s", line, k)
		}
		return v, nil
	}
	num := func(k string) (int64, error) {
		v, err := need(k)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse health line %q: %s: %w", line, k, err)
		}
		return n, nil
	}
	lvl, err := need("level")
	if err != nil {
		return r, err
	}
	switch HealthLevel(lvl) {
	case HealthOK, HealthWarning, HealthCritical:
		r.Level = HealthLevel(lvl)
	default:
		return r, fmt.Errorf("parse health line %q: unknown level %q", line, lvl)
	}
	if r.MountPoint, err = need("mount"); err != nil {
		return r, err
	}
	var n int64
	for _, f := range []struct {
		key string
		set func(int64)
	}{
		{"used_pct", func(v int64) { r.UsedPct = int(v) }},
		{"size_bytes", func(v int64) { r.SizeBytes = v }},
		{"used_bytes", func(v int64) { r.UsedBytes = v }},
		{"avail_bytes", func(v int64) { r.AvailBytes = v }},
		{"warn_pct", func(v int64) { r.WarnPct = int(v) }},
		{"crit_pct", func(v int64) { r.CritPct = int(v) }},
	} {
		if n, err = num(f.key); err != nil {
			return r, err
		}
		f.set(n)
	}
	return r, nil
}
