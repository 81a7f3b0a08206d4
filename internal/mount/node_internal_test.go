package mount

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A volume may exist only as its by-id node (a simulated server, a plugin container that sees
// no /dev/loopN): mount and grow must then use that node, not the kernel name.
func TestNodeForFallsBackToTheGivenNode(t *testing.T) {
	if os.Geteuid() != 0 {
		if testing.Short() {
			t.Skip("mknod needs root (skipped under -short)")
		}
		t.Fatal("mknod needs root")
	}
	dir := t.TempDir()
	byID := filepath.Join(dir, "scsi-0HC_Volume_7")
	const major, minor = 7, 250
	if err := syscall.Mknod(byID, syscall.S_IFBLK|0o600, major<<8|minor); err != nil {
		t.Fatal(err)
	}
	canonical := filepath.Join(dir, "loop250") // absent, as /dev/loop250 inside the server
	if got := nodeFor(canonical, byID, major, minor); got != byID {
		t.Errorf("canonical node missing: nodeFor = %s, want %s", got, byID)
	}
	other := filepath.Join(dir, "other")
	if err := syscall.Mknod(other, syscall.S_IFBLK|0o600, major<<8|(minor+1)); err != nil {
		t.Fatal(err)
	}
	if got := nodeFor(other, byID, major, minor); got != byID {
		t.Errorf("canonical node of another device: nodeFor = %s, want %s", got, byID)
	}
	if got := nodeFor(byID, "/nonexistent", major, minor); got != byID {
		t.Errorf("canonical node present: nodeFor = %s, want it (%s)", got, byID)
	}
}
