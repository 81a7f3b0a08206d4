package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
)

// TestIdleNamesOthersRelyOn: issue 11's names as a user types and reads them. up
// --idle-timeout (20s, 30m, off) and the same in settings, per environment; the hidden
// --billing-period (not in --help, kept in the environment's settings); bad values refused
// before any request; status -o json has exactly idle (bool), idle_since, down_at and
// keeping_up (a list, also without a server).
func TestIdleNamesOthersRelyOn(t *testing.T) {
	dir := isolate(t)
	t.Setenv("HCLOUD_TOKEN", "x")
	t.Setenv("HCLOUD_ENDPOINT", "http://127.0.0.1:1/v1") // nothing listens: bad input must fail before any request

	help, _, err := run(t, "", "up", "--help")
	if err != nil || !strings.Contains(help, "--idle-timeout") || strings.Contains(help, "billing-period") {
		t.Fatalf("up --help must show --idle-timeout and hide --billing-period: %v\n%s", err, help)
	}
	if strings.Contains(help, "refused") || !strings.Contains(help, "a Swarm (--nodes) goes down as a whole once every node is idle") ||
		!strings.Contains(help, "A Docker Swarm (up --nodes N) goes down as a\nwhole") || !strings.Contains(help, "activity on any node keeps every node up") {
		t.Fatalf("up --help must say a swarm goes down as a whole, and no longer that --idle-timeout is refused there:\n%s", help)
	}
	for _, c := range []struct{ args []string }{
		{[]string{"up", "--idle-timeout", "soon", "--no-volume-plugin"}},
		{[]string{"up", "--idle-timeout", "-5m", "--no-volume-plugin"}},
		{[]string{"up", "--billing-period", "1s", "--no-volume-plugin"}},
		{[]string{"settings", "set", "idle_timeout", "later"}},
		{[]string{"settings", "set", "idle_margin", "0"}},
	} {
		if _, _, err := run(t, "", c.args...); err == nil {
			t.Errorf("%v: accepted", c.args)
		} else if !strings.Contains(err.Error(), "idle timeout") && !strings.Contains(err.Error(), "idle-timeout") &&
			!strings.Contains(err.Error(), "billing") && !strings.Contains(err.Error(), "idle_margin") {
			t.Errorf("%v: the error does not name what was wrong: %v", c.args, err)
		}
	}

	envFile := filepath.Join(dir, "docker", "dockbridge", "envs", "dev", "settings.json")
	for _, c := range []struct{ value, stored string }{{"20s", "20s"}, {"30m", "30m0s"}, {"off", "off"}, {"45m", "45m0s"}} {
		out, _, err := run(t, "", "settings", "set", "idle_timeout", c.value, "--name", "dev")
		if err != nil || !strings.Contains(out, `for environment "dev"`) || !strings.Contains(out, "no server now") {
			t.Fatalf("settings set idle_timeout %s --name dev: %v\n%s", c.value, err, out)
		}
		var es struct {
			IdleTimeout string `json:"idle_timeout"`
		}
		b, err := os.ReadFile(envFile)
		if err != nil || json.Unmarshal(b, &es) != nil || es.IdleTimeout != c.stored {
			t.Fatalf("after settings set idle_timeout %s: %s (%v)", c.value, b, err)
		}
		if fi, err := os.Stat(envFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", envFile, fi.Mode(), err)
		}
	}
	out, _, err := run(t, "", "settings", "--name", "dev")
	if err != nil || !strings.Contains(out, "idle_timeout (dev)") || !strings.Contains(out, "45m") {
		t.Fatalf("settings --name dev: %v\n%s", err, out)
	}
	// Another environment keeps the default.
	if out, _, err := run(t, "", "settings"); err != nil || !strings.Contains(out, "idle_timeout (default)") || !strings.Contains(out, "30m") {
		t.Fatalf("settings: %v\n%s", err, out)
	}

	// status -o json without a server: the four fields, with their types.
	sim := hcloudsimtest.Start(t)
	t.Setenv("HCLOUD_ENDPOINT", sim.Endpoint)
	t.Setenv("HCLOUD_TOKEN", sim.Token)
	out, _, err = run(t, "", "status", "--name", "dev", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	for _, k := range []string{"idle", "idle_since", "down_at", "keeping_up"} {
		if _, ok := doc[k]; !ok {
			t.Fatalf("status -o json has no %q:\n%s", k, out)
		}
	}
	var idle bool
	var keeping []string
	if json.Unmarshal(doc["idle"], &idle) != nil || !idle {
		t.Fatalf("idle without a server: %s", doc["idle"])
	}
	if string(doc["keeping_up"]) != "[]" || json.Unmarshal(doc["keeping_up"], &keeping) != nil {
		t.Fatalf("keeping_up must be a list, empty without a server: %s", doc["keeping_up"])
	}
	if string(doc["idle_since"]) != "null" || string(doc["down_at"]) != "null" {
		t.Fatalf("idle_since and down_at without a server: %s %s", doc["idle_since"], doc["down_at"])
	}
	if !strings.Contains(out, "the next docker command through the context dockbridge-dev starts one") {
		t.Fatalf("status without a server does not say the next command wakes it:\n%s", out)
	}
}
