package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// root is the repository's top directory.
func root(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// The README says `make bench` prints every table: every bench-* target of the Makefile and its
// fragments is in BENCH_TARGETS, which `make bench` runs.
func TestMakeBenchRunsEveryBenchmark(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is not installed")
	}
	dir := root(t)
	out, err := exec.Command("make", "-C", dir, "-pn", "help").CombinedOutput()
	if err != nil {
		t.Fatalf("make -pn: %v\n%s", err, out)
	}
	var listed []string
	targetRe := regexp.MustCompile(`(?m)^(bench-[a-z0-9-]+):`)
	var defined []string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "BENCH_TARGETS := "); ok {
			listed = strings.Fields(v)
		}
	}
	for _, m := range targetRe.FindAllStringSubmatch(string(out), -1) {
		if !slices.Contains(defined, m[1]) {
			defined = append(defined, m[1])
		}
	}
	if len(defined) == 0 {
		t.Fatal("no bench-* target found")
	}
	for _, d := range defined {
		if !slices.Contains(listed, d) {
			t.Errorf("make bench does not run %s (BENCH_TARGETS = %q)", d, listed)
		}
	}
	readme, _ := os.ReadFile(filepath.Join(dir, "README.md"))
	for _, d := range defined {
		if !strings.Contains(string(readme), "make "+d) {
			t.Errorf("the README's Benchmarks do not name make %s", d)
		}
	}
}

// make build stamps the version, the commit and the build date (`docker dockbridge version`).
func TestMakeStampsVersionCommitAndDate(t *testing.T) {
	out, err := exec.Command("make", "-C", root(t), "-pn", "help").CombinedOutput()
	if err != nil {
		t.Fatalf("make -pn: %v\n%s", err, out)
	}
	var ldflags string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "LDFLAGS := "); ok {
			ldflags = v
		}
	}
	for _, re := range []string{`\.Version=\S+`, `\.Commit=[0-9a-f]{12}\b`, `\.BuildDate=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`} {
		if !regexp.MustCompile(re).MatchString(ldflags) {
			t.Errorf("LDFLAGS %q lack %s", ldflags, re)
		}
	}
}
