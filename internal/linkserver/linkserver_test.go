package linkserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/dockbridge/dockbridge/internal/link"
)

// fakeMounter records binds; IsMountPoint says true for what it bound.
type fakeMounter struct{ bound map[string]string }

func (f *fakeMounter) Bind(_ context.Context, src, dst string) error {
	f.bound[dst] = src
	return nil
}
func (f *fakeMounter) Unbind(_ context.Context, dst string) error { delete(f.bound, dst); return nil }
func (f *fakeMounter) IsMountPoint(dst string) (bool, error)      { _, ok := f.bound[dst]; return ok, nil }

func TestRegisterReadyUnregister(t *testing.T) {
	root := t.TempDir()
	laptop := filepath.Join(t.TempDir(), "Users", "me", "proj") // stands for a path the server does not have
	m := &fakeMounter{bound: map[string]string{}}
	s := &Shares{Root: root, Mounter: m, Now: func() time.Time { return time.Unix(1_800_000_000, 0) }}

	sh, err := s.Register(laptop)
	if err != nil {
		t.Fatal(err)
	}
	if sh.State != StateSyncing || m.bound[laptop] != s.CopyPath(laptop) {
		t.Fatalf("registered %+v, bound %v", sh, m.bound)
	}
	if _, err := s.Register(laptop); err != nil {
		t.Fatalf("a second register: %v", err)
	}
	if _, err := s.Register(filepath.Join(laptop, "sub")); err == nil || !strings.Contains(err.Error(), "inside the shared folder") {
		t.Fatalf("a folder inside a share: %v", err)
	}
	if _, err := s.Register(filepath.Dir(laptop)); err == nil || !strings.Contains(err.Error(), "holds the shared folder") {
		t.Fatalf("a folder around a share: %v", err)
	}
	boot, err := os.ReadFile(s.BootScript())
	if err != nil || !strings.Contains(string(boot), "mount --bind '"+s.CopyPath(laptop)+"' '"+laptop+"'") {
		t.Fatalf("boot script: %s (%v)", boot, err)
	}
	if err := s.MarkReady(laptop); err != nil {
		t.Fatal(err)
	}
	r, _ := s.Load()
	if len(r.Shares) != 1 || r.Shares[0].State != StateReady {
		t.Fatalf("registry after ready: %+v", r)
	}
	must(t, os.WriteFile(filepath.Join(s.CopyPath(laptop), "keep"), []byte("x"), 0o644))
	if err := s.Unregister(laptop, false, []string{"web-1"}); err == nil || !strings.Contains(err.Error(), "web-1") {
		t.Fatalf("unregister under a running container: %v", err)
	}
	if err := s.Unregister(laptop, true, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.bound[laptop]; ok {
		t.Fatal("still mounted after unregister")
	}
	if _, err := os.Stat(filepath.Join(s.CopyPath(laptop), "keep")); err != nil {
		t.Fatalf("the copy was removed although kept: %v", err)
	}
	r, _ = s.Load()
	if len(r.Shares) != 0 {
		t.Fatalf("registry after unregister: %+v", r)
	}
}

func TestRegisterRefusesServerPaths(t *testing.T) {
	s := &Shares{Root: t.TempDir(), Mounter: &fakeMounter{bound: map[string]string{}}}
	for _, p := range []string{"/", "/etc", "/var/lib/docker/x", "/usr/local/src", "relative/path", "/a/../b"} {
		if _, err := s.Register(p); err == nil {
			t.Errorf("Register(%q) succeeded", p)
		}
	}
	// A path where the server has a directory with content of its own.
	own := t.TempDir()
	must(t, os.WriteFile(filepath.Join(own, "f"), []byte("x"), 0o644))
	if _, err := s.Register(own); err == nil || !strings.Contains(err.Error(), "a folder of its own") {
		t.Fatalf("Register over a server folder with content: %v", err)
	}
}

func TestCheckBind(t *testing.T) {
	reg := Registry{Shares: []Share{
		{Path: "/Users/me/proj", State: StateReady},
		{Path: "/Users/me/new", State: StateSyncing},
	}}
	server := fstest.MapFS{
		"var/run/docker.sock":   &fstest.MapFile{Mode: fs.ModeSocket},
		"etc/localtime":         &fstest.MapFile{Data: []byte("tz")},
		"srv":                   &fstest.MapFile{Mode: fs.ModeDir},
		"opt/data/x":            &fstest.MapFile{Data: []byte("x")},
		"Users/me/proj/a":       &fstest.MapFile{Data: []byte("a")},
		"Users/me/unshared-dir": &fstest.MapFile{Mode: fs.ModeDir},
	}
	stat := func(p string) (fs.FileInfo, error) { return fs.Stat(server, strings.TrimPrefix(p, "/")) }
	readDir := func(p string) ([]fs.DirEntry, error) { return fs.ReadDir(server, strings.TrimPrefix(p, "/")) }
	for _, c := range []struct {
		src  string
		want string // "" allowed, else a part of the error
	}{
		{"/Users/me/proj", ""},
		{"/Users/me/proj/src/not-yet", ""}, // Docker makes it in the shared copy, which reaches the laptop
		{"/Users/me/new/x", "not complete yet"},
		{"/Users/me", "only /Users/me/proj, /Users/me/new inside it"},
		{"/Users/me/other", "docker dockbridge share add /Users/me/other"},
		{"/Users/me/unshared-dir", "empty directory"},
		{"/srv", "dockbridge.bind=server"},
		{"/var/run/docker.sock", ""},
		{"/etc/localtime", ""},
		{"/opt/data", ""},
		{"/", "only"},
	} {
		err := CheckBind(c.src, reg, stat, readDir)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.src, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error with %q", c.src, err, c.want)
		}
	}
}

func TestAuthzPlugin(t *testing.T) {
	root := t.TempDir()
	s := &Shares{Root: root, Mounter: &fakeMounter{bound: map[string]string{}}}
	laptop := filepath.Join(t.TempDir(), "proj")
	if _, err := s.Register(laptop); err != nil {
		t.Fatal(err)
	}
	must(t, s.MarkReady(laptop))
	srv := httptest.NewServer(&AuthzPlugin{Shares: s})
	defer srv.Close()
	ask := func(path string, req map[string]any) (allow bool, msg string) {
		t.Helper()
		b, _ := json.Marshal(req)
		resp, err := http.Post(srv.URL+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out authzResponse
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out.Allow, out.Msg
	}
	create := func(body string) map[string]any {
		return map[string]any{"RequestMethod": "POST", "RequestURI": "/v1.41/containers/create?name=x", "RequestBody": []byte(body)}
	}
	missing := filepath.Join(t.TempDir(), "gone")
	for _, c := range []struct {
		name  string
		req   map[string]any
		allow bool
	}{
		{"a shared folder (-v)", create(`{"HostConfig":{"Binds":["` + laptop + `:/app:ro"]}}`), true},
		{"a shared folder (--mount)", create(`{"HostConfig":{"Mounts":[{"Type":"bind","Source":"` + laptop + `","Target":"/app"}]}}`), true},
		{"a named volume", create(`{"HostConfig":{"Binds":["data:/data"]}}`), true},
		{"no mounts", create(`{"Image":"x"}`), true},
		{"a missing path (-v)", create(`{"HostConfig":{"Binds":["` + missing + `:/app"]}}`), false},
		{"a missing path (--mount)", create(`{"HostConfig":{"Mounts":[{"Type":"bind","Source":"` + missing + `","Target":"/app"}]}}`), false},
		{"a missing path, labelled for the server", create(`{"Labels":{"dockbridge.bind":"server"},"HostConfig":{"Binds":["` + missing + `:/app"]}}`), true},
		{"not a create", map[string]any{"RequestMethod": "POST", "RequestURI": "/v1.41/containers/x/start"}, true},
		{"a GET", map[string]any{"RequestMethod": "GET", "RequestURI": "/v1.41/containers/json"}, true},
	} {
		allow, msg := ask("/AuthZPlugin.AuthZReq", c.req)
		if allow != c.allow {
			t.Errorf("%s: allow=%v (%s), want %v", c.name, allow, msg, c.allow)
		}
		if !allow && !strings.Contains(msg, "docker dockbridge share add") {
			t.Errorf("%s: the refusal does not name the fix: %s", c.name, msg)
		}
	}
	if allow, msg := ask("/AuthZPlugin.AuthZReq", map[string]any{"RequestMethod": "GET", "RequestURI": "/version?" + ProbeQuery}); allow || msg != ProbeAnswer {
		t.Errorf("probe: allow=%v %q", allow, msg)
	}
	if allow, _ := ask("/AuthZPlugin.AuthZRes", map[string]any{"RequestMethod": "POST", "RequestURI": "/containers/create"}); !allow {
		t.Error("a response was refused")
	}
	resp, err := http.Post(srv.URL+"/Plugin.Activate", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var act map[string][]string
	_ = json.NewDecoder(resp.Body).Decode(&act)
	resp.Body.Close()
	if len(act["Implements"]) != 1 || act["Implements"][0] != "authz" {
		t.Fatalf("activate: %v", act)
	}
}

func TestPublishedPorts(t *testing.T) {
	var cs []container
	must(t, json.Unmarshal([]byte(`[
	  {"Id":"a","Names":["/web"],"Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"},{"IP":"::","PrivatePort":80,"PublicPort":8080,"Type":"tcp"},{"PrivatePort":9000,"Type":"tcp"}]},
	  {"Id":"b","Names":["/db"],"Ports":[{"IP":"127.0.0.1","PrivatePort":5432,"PublicPort":5432,"Type":"tcp"},{"IP":"0.0.0.0","PrivatePort":53,"PublicPort":53,"Type":"udp"}]},
	  {"Id":"c","Names":["/web2"],"Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"}]}
	]`), &cs))
	got := PublishedPorts(cs)
	want := []link.Port{{Port: 5432, HostIP: "127.0.0.1", Containers: []string{"db"}}, {Port: 8080, HostIP: "0.0.0.0", Containers: []string{"web", "web2"}}}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("PublishedPorts:\n got %s\nwant %s", gb, wb)
	}
	if got[0].Target() != "127.0.0.1" || (link.Port{HostIP: "10.0.0.5"}).Target() != "10.0.0.5" {
		t.Fatal("Target")
	}
}

func TestAddAuthzPluginKeepsDaemonJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "daemon.json")
	must(t, os.WriteFile(p, []byte(`{"data-root":"/var/lib/docker","live-restore":false,"authorization-plugins":["other"]}`), 0o644))
	changed, err := addAuthzPlugin(p)
	if err != nil || !changed {
		t.Fatalf("first: %v %v", changed, err)
	}
	var cfg map[string]any
	b, _ := os.ReadFile(p)
	must(t, json.Unmarshal(b, &cfg))
	if cfg["data-root"] != "/var/lib/docker" || cfg["live-restore"] != false {
		t.Fatalf("other keys lost: %s", b)
	}
	if got := cfg["authorization-plugins"].([]any); len(got) != 2 || got[0] != "other" || got[1] != AuthzPluginName {
		t.Fatalf("plugins: %v", got)
	}
	if changed, err := addAuthzPlugin(p); err != nil || changed {
		t.Fatalf("second: %v %v", changed, err)
	}
}

func TestIsSession(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want bool
	}{
		{[]string{link.ServerBinary, "local", "session"}, true},
		{[]string{"/bin/bash", "-c", link.Command}, true},
		{[]string{"-bash", "-c", link.Command}, true},
		{[]string{link.ServerBinary, "local", "authz"}, false},
		{[]string{"docker", "system", "dial-stdio"}, false},
		{[]string{"/bin/sh", "-c", "docker system dial-stdio"}, false},
	} {
		if got := link.IsSession(c.argv); got != c.want {
			t.Errorf("IsSession(%q) = %v", c.argv, got)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
