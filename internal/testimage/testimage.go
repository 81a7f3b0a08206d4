// Package testimage makes tiny container images for tests: no registry is reachable, so
// tests `docker import` a root filesystem built from this machine's static busybox.
package testimage

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"os"
	"slices"
	"testing"
)

// BusyboxPath is the static busybox of Debian's busybox-static package.
const BusyboxPath = "/bin/busybox"

// BusyboxRootfs returns a root filesystem tar holding only the static busybox (bin/busybox,
// bin/sh). It fails the test when busybox is missing or dynamically linked.
func BusyboxRootfs(t testing.TB) []byte {
	t.Helper()
	f, err := elf.Open(BusyboxPath)
	if err != nil {
		t.Fatalf("%s: %v (apt-get install busybox-static)", BusyboxPath, err)
	}
	static := !slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
	f.Close()
	if !static {
		t.Fatalf("%s is dynamically linked: apt-get install busybox-static", BusyboxPath)
	}
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755})
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(data))})
	_, _ = tw.Write(data)
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/sh", Linkname: "busybox", Mode: 0o777})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
