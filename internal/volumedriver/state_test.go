package volumedriver

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// A damaged state file never stops the plugin from starting: Docker disables a plugin that
// dies within its start-up check for good, and every hetzner volume would be dead with it.
// The file is set aside (kept, for a person to look at), the log says so, start-up recovery
// keeps the mounts it finds, and the plugin works from the API's view.
func TestDamagedStateIsSetAsideAndThePluginStarts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(good []byte) []byte
		why    string // in the log line
	}{
		{"truncated", func(good []byte) []byte { return good[:len(good)/2] }, "not a state file"},
		{"garbage", func([]byte) []byte { return []byte("\x00\x17\xffnot json at all\n") }, "not a state file"},
		{"empty", func([]byte) []byte { return nil }, "not a state file"},
		{"null entry", func([]byte) []byte { return []byte(`{"version":1,"volumes":{"db":null}}`) }, "no volume id"},
		{"name escaping the mount root", func([]byte) []byte {
			return []byte(`{"version":1,"volumes":{"../../etc":{"id":7,"mountpoint":"/etc"}}}`)
		}, "can't be a Hetzner Cloud volume name"},
		{"another version", func([]byte) []byte { return []byte(`{"version":2,"volumes":{}}`) }, "version 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.create("inuse", nil)
			mp := h.mount("inuse", "c1")
			path := filepath.Join(h.setting.StateDir, "volumes.json")
			good, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			bad := tc.damage(good)
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}

			// The plugin's start-up, as volume-plugin/main.go runs it.
			var logs bytes.Buffer
			log := logrus.New()
			log.SetOutput(&logs)
			store, err := NewStateStore(h.setting.StateDir)
			if err != nil {
				t.Fatal(err)
			}
			d, err := New(Config{Settings: h.setting, Cloud: h.cloud, Mounter: h.m, Store: store, Log: log, DeviceExists: h.m.exists,
				Instance: func(context.Context) (hetzner.Instance, error) { return hetzner.Instance{ID: 1}, nil }})
			if err != nil {
				t.Fatalf("start-up with a %s state file failed: %v", tc.name, err)
			}
			if err := d.Recover(t.Context()); err != nil {
				t.Fatalf("recover with a %s state file: %v", tc.name, err)
			}

			aside, _ := filepath.Glob(path + ".damaged-*")
			if len(aside) != 1 {
				t.Fatalf("set-aside files %v, want one", aside)
			}
			if kept, _ := os.ReadFile(aside[0]); !bytes.Equal(kept, bad) {
				t.Errorf("the set-aside file does not hold the damaged bytes")
			}
			line := logs.String()
			if !strings.Contains(line, "level=error") || !strings.Contains(line, "was damaged") || !strings.Contains(line, tc.why) ||
				!strings.Contains(line, "set it aside as "+aside[0]) {
				t.Errorf("the log does not say what happened:\n%s", line)
			}
			if !h.m.mounted(mp) {
				t.Error("recover unmounted a mount a container may still use")
			}

			// It works: the volume comes back from the API, the old mount is taken over, and
			// new state is saved.
			h.d = d
			if err := d.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := h.mount("inuse", "c2"); got != mp {
				t.Errorf("mount after start-up: %s, want %s", got, mp)
			}
			h.create("fresh", nil)
			h.mount("fresh", "c3")
			if _, err := store.Load(); err != nil {
				t.Errorf("the new state file: %v", err)
			}
		})
	}
}

func TestLoadAcceptsAMissingOrGoodFile(t *testing.T) {
	store, err := NewStateStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	vols, err := store.Load()
	if err != nil || vols == nil || len(vols) != 0 {
		t.Fatalf("missing file: %v %v", vols, err)
	}
	if err := store.Save(map[string]*VolumeState{"db": {Name: "db", ID: 42}}); err != nil {
		t.Fatal(err)
	}
	vols, err = store.Load()
	if err != nil || vols["db"] == nil || vols["db"].ID != 42 || vols["db"].Labels == nil {
		t.Fatalf("good file: %+v %v", vols, err)
	}
	var dmg *struct{ error }
	if errors.As(err, &dmg) {
		t.Fatal("a good file reported as damaged")
	}
}
