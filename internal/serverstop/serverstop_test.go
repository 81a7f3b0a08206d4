package serverstop

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dockbridge/dockbridge/internal/testenv"
)

func TestScriptPassesShellcheck(t *testing.T) {
	bin, err := exec.LookPath("shellcheck")
	if err != nil {
		testenv.Require(t, "checking dockbridge-stop.sh needs", []string{"shellcheck (apt-get install shellcheck)"})
	}
	if out, err := exec.Command(bin, "-s", "bash", "dockbridge-stop.sh").CombinedOutput(); err != nil {
		t.Fatalf("shellcheck: %v\n%s", err, out)
	}
}

// TestCommandRunsTheScript: the command line carries the whole script (quotes included) and
// the verb; an unknown verb is refused with the usage.
func TestCommandRunsTheScript(t *testing.T) {
	dir := t.TempDir()
	// The script stops at the verb check: an unknown verb runs nothing.
	out, err := exec.Command("sh", "-c", Command("bogus")).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || string(out) != "usage: dockbridge-stop stop|start\n" {
		t.Fatalf("bogus verb: %v %q", err, out)
	}
	// What bash runs is the script, byte for byte.
	probe := "bash -c " + shellQuote(`printf %s "$0" > `+filepath.Join(dir, "got")) + " " + shellQuote(Script)
	if out, err := exec.Command("sh", "-c", probe).CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "got")); string(got) != Script {
		t.Fatalf("the quoted script arrived changed (%d bytes, want %d)", len(got), len(Script))
	}
}

func TestParse(t *testing.T) {
	out := []byte(`containers_running=3
docker=inactive
docker_seconds=4.2
unmounted=/var/lib/docker/plugins/abc/propagated-mount/db /var/lib/docker/plugins/abc/propagated-mount /var/lib/docker
volumes_seconds=0.3
unmount_error=/x: target is busy; 
still_mounted=/x
result=incomplete
`)
	want := Report{ContainersRunning: 3, Docker: "inactive", DockerSeconds: 4.2, VolumesSeconds: 0.3,
		Unmounted:    []string{"/var/lib/docker/plugins/abc/propagated-mount/db", "/var/lib/docker/plugins/abc/propagated-mount", "/var/lib/docker"},
		StillMounted: "/x", Errors: []string{"/x: target is busy"}}
	if got := Parse(out); !reflect.DeepEqual(got, want) {
		t.Fatalf("Parse = %+v\nwant %+v", got, want)
	}
	if !Parse([]byte("result=ok\n")).OK {
		t.Fatal("result=ok is not OK")
	}
}
