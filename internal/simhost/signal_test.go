package simhost

import "testing"

// TestRTSignal: an emulated (arm64) server's systemd gets host SIGRTMIN+n as SIGRTMIN+n-2
// (qemu-user keeps two real-time signals), so halt and poweroff are sent two higher.
func TestRTSignal(t *testing.T) {
	for _, c := range []struct {
		arch string
		n    int
		want string
	}{
		{ArchAMD64, 3, "SIGRTMIN+3"}, {"", 4, "SIGRTMIN+4"},
		{ArchARM64, 3, "SIGRTMIN+5"}, {ArchARM64, 4, "SIGRTMIN+6"},
	} {
		if got := rtSignal(c.arch, c.n); got != c.want {
			t.Errorf("rtSignal(%q, %d) = %s, want %s", c.arch, c.n, got, c.want)
		}
	}
}
