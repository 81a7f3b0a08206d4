package volumeops

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dockbridge/dockbridge/internal/volumeops/helper"
)

func TestCheckThresholds(t *testing.T) {
	vol := Volume{Name: "v", Driver: "hetzner"}
	probe := func(usedPct, inodePct uint64) helper.ProbeResult {
		return helper.ProbeResult{Mounted: true, Writable: true, TotalBytes: 1000, FreeBytes: 1000 - usedPct*10,
			TotalInodes: 100, FreeInodes: 100 - inodePct}
	}
	cases := []struct {
		name  string
		p     helper.ProbeResult
		err   error
		th    Thresholds
		want  Status
		about string
	}{
		{"low usage", probe(50, 1), nil, DefaultThresholds, StatusOK, ""},
		{"just below warning", probe(69, 1), nil, DefaultThresholds, StatusOK, ""},
		{"at warning", probe(70, 1), nil, DefaultThresholds, StatusWarning, "disk 70.0% used"},
		{"between", probe(84, 1), nil, DefaultThresholds, StatusWarning, "warning at 70%"},
		{"at critical", probe(85, 1), nil, DefaultThresholds, StatusCritical, "critical at 85%"},
		{"inodes critical", probe(10, 90), nil, DefaultThresholds, StatusCritical, "inodes 90.0% used"},
		{"custom thresholds", probe(60, 1), nil, Thresholds{Warning: 0.5, Critical: 0.6}, StatusCritical, "critical at 60%"},
		{"not writable", func() helper.ProbeResult {
			p := probe(10, 1)
			p.Writable, p.WriteError = false, "read-only file system"
			return p
		}(), nil, DefaultThresholds, StatusCritical, "read-only"},
		{"not mounted", func() helper.ProbeResult { p := probe(10, 1); p.Mounted = false; return p }(), nil, DefaultThresholds, StatusCritical, "not mounted"},
		{"mount fails", helper.ProbeResult{}, errors.New("plugin hetzner: volume attached to another server"), DefaultThresholds, StatusCritical, "another server"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Evaluate(vol, tc.p, tc.err, tc.th)
			if r.Status != tc.want {
				t.Fatalf("status %s, want %s (%v)", r.Status, tc.want, r.Problems)
			}
			if !strings.Contains(strings.Join(r.Problems, "; "), tc.about) {
				t.Fatalf("problems %v do not mention %q", r.Problems, tc.about)
			}
		})
	}
	if err := (Thresholds{Warning: 0.9, Critical: 0.8}).Validate(); err == nil {
		t.Fatal("warning above critical accepted")
	}
}

func TestMetricsParseAsPrometheus(t *testing.T) {
	m := Metrics{
		Volumes: []VolumeMetrics{
			{Volume: "db", Driver: "hetzner", HetznerID: 4711, ProvisionedBytes: 10 << 30, UsedBytes: 12345, Files: 7, ContainersRunning: 1},
			{Volume: `odd"name\with`, Driver: "local", UsedBytes: -1, Files: -1, ContainersStopped: 2},
		},
		Backups: []BackupMetrics{{Volume: "db", Count: 3, LastSuccess: time.Unix(1760000000, 0), LastSize: 999}},
	}
	var buf bytes.Buffer
	if err := m.WritePrometheus(&buf); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("the Prometheus parser rejects our output: %v\n%s", err, buf.String())
	}
	for name := range fams {
		if !strings.HasPrefix(name, "dockbridge_") || strings.HasSuffix(name, "_mb") {
			t.Errorf("metric name %s", name)
		}
		if !model.IsValidLegacyMetricName(name) {
			t.Errorf("metric name %s is not a valid legacy name", name)
		}
	}
	get := func(name string, labels map[string]string) float64 {
		t.Helper()
		mf, ok := fams[name]
		if !ok {
			t.Fatalf("no %s in\n%s", name, buf.String())
		}
	next:
		for _, mm := range mf.Metric {
			for k, v := range labels {
				found := false
				for _, lp := range mm.Label {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return mm.GetGauge().GetValue()
		}
		t.Fatalf("no %s%v", name, labels)
		return 0
	}
	if v := get("dockbridge_volume_used_bytes", map[string]string{"volume": "db"}); v != 12345 {
		t.Errorf("used bytes %v", v)
	}
	if v := get("dockbridge_backup_last_success_timestamp_seconds", map[string]string{"volume": "db"}); v != 1760000000 {
		t.Errorf("last success %v", v)
	}
	if v := get("dockbridge_volume_info", map[string]string{"volume": `odd"name\with`, "driver": "local"}); v != 1 {
		t.Errorf("info %v", v)
	}
	if v := get("dockbridge_volume_info", map[string]string{"volume": "db", "hetzner_id": "4711"}); v != 1 {
		t.Errorf("info %v", v)
	}
	if v := get("dockbridge_volume_containers", map[string]string{"volume": `odd"name\with`, "state": "stopped"}); v != 2 {
		t.Errorf("containers %v", v)
	}
	// Unmeasured usage is absent, not zero.
	if strings.Count(buf.String(), "dockbridge_volume_used_bytes{") != 1 {
		t.Errorf("unmeasured usage exported:\n%s", buf.String())
	}

	// The textfile is written atomically and parses too.
	path := filepath.Join(t.TempDir(), "dockbridge.prom")
	if err := m.WriteTextfile(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !bytes.Equal(b, buf.Bytes()) {
		t.Fatal("textfile differs from the printed metrics")
	}
	des, _ := os.ReadDir(filepath.Dir(path))
	if len(des) != 1 {
		t.Fatalf("temp files left: %v", des)
	}
}
