package boottest

import (
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// BenchmarkBootToReady measures a docker-ce server with a blank data volume, created
// through the API: from the create call to SSH answering with the pinned host key, and to
// cloud-init done (volume formatted and mounted, Docker started on it). One boot at a time;
// medians over b.N boots (go test -run XXX -bench BootToReady -benchtime 5x ./internal/boottest).
func BenchmarkBootToReady(b *testing.B) {
	e := Start(b)
	var toSSH, toReady []time.Duration
	for b.Loop() {
		vol := e.volume(b, "bench", "")
		s := e.boot(b, "bench", bootOpts{volumes: []*hcloud.Volume{vol}})
		s.succeeded(b)
		toSSH = append(toSSH, s.toSSH)
		toReady = append(toReady, s.toReady)
		b.StopTimer()
		e.deleteServer(b, s)
		if _, err := e.Client().SSHKey.Delete(b.Context(), &hcloud.SSHKey{ID: mustKeyID(b, e, "bench-key")}); err != nil {
			b.Fatal(err)
		}
		if _, err := e.Client().Volume.Delete(b.Context(), vol); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(median(toSSH).Milliseconds()), "ms-to-ssh")
	b.ReportMetric(float64(median(toReady).Milliseconds()), "ms-to-ready")
}

func mustKeyID(b *testing.B, e *Env, name string) int64 {
	k, _, err := e.Client().SSHKey.GetByName(b.Context(), name)
	if err != nil || k == nil {
		b.Fatalf("ssh key %s: %v", name, err)
	}
	return k.ID
}
