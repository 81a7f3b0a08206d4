package e2e_test

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/testimage"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// TestPersistenceDemo is the demo from the text we started from, on servers that really boot:
//
//	docker dockbridge up
//	docker --context dockbridge run -d --name keep ...   (an image, a named volume, a hetzner volume)
//	docker dockbridge down
//	docker dockbridge up
//
// After the second up, ps -a, images and volume ls show all of it and the data in both volumes
// is intact, byte for byte. On the way: up twice is a no-op, status -o json, ssh -- docker
// info, and at the end destroy removes everything that is ours and nothing else.
func TestPersistenceDemo(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	const env = "default"

	first, spent := w.up(t, env)
	if !first.ServerCreated {
		t.Fatalf("first up did not create a server: %+v", first)
	}
	logUp(t, "up from nothing (fast action profile)", first, spent)

	t.Run("up again is a no-op", func(t *testing.T) {
		again, spent := w.up(t, env)
		t.Logf("up when already up: %.2fs, API requests %s", again.Seconds, spent)
		if again.ServerCreated || again.ServerID != first.ServerID {
			t.Errorf("second up: created=%v server %d, want the same server %d", again.ServerCreated, again.ServerID, first.ServerID)
		}
		if m := spent.mutations(); len(m) > 0 {
			t.Errorf("second up changed something: %v (%s)", m, spent)
		}
		if spent.total() > 5 {
			t.Errorf("second up spent %s, want at most 5 GETs (one per resource)", spent)
		}
		for _, s := range again.Steps {
			if strings.HasPrefix(s.Title, "Installing the hetzner volume plugin") && s.Note != "already installed" {
				t.Errorf("plugin step on the second up: %q, want already installed", s.Note)
			}
		}
	})

	t.Run("the user-data's host key no longer authenticates the server", func(t *testing.T) {
		userDataHostKeyIsWorthless(t, w, env, first.ServerID)
	})
	t.Run("docker plugin inspect on the server shows no token", func(t *testing.T) { tokenNotInPluginSettings(t, w, env) })
	t.Run("the health check enables a plugin Docker gave up on", func(t *testing.T) { healthCheckReenablesPlugin(t, w, env) })

	t.Run("status -o json", func(t *testing.T) {
		var r result
		spent := w.requests.spent(func() { r = w.must(t, "dockbridge", "status", "--name", env, "-o", "json") })
		t.Logf("status: API requests %s", spent)
		var st struct {
			Server *struct {
				ID           int64   `json:"id"`
				Status       string  `json:"status"`
				IPv4         string  `json:"ipv4"`
				PricePerHour float64 `json:"price_per_hour"`
			} `json:"server"`
			Volume *struct {
				ID        int64 `json:"id"`
				UsedBytes int64 `json:"used_bytes"`
				Total     int64 `json:"total_bytes"`
			} `json:"volume"`
			Health  string `json:"health_last_line"`
			Context string `json:"context"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status -o json: %v\n%s", err, r.stdout)
		}
		if st.Server == nil || st.Server.ID != first.ServerID || st.Server.Status != "running" || st.Server.PricePerHour <= 0 {
			t.Errorf("status server = %+v, want %d running with a price\n%s", st.Server, first.ServerID, r.stdout)
		}
		if st.Volume == nil || st.Volume.ID != first.VolumeID || st.Volume.UsedBytes <= 0 || st.Volume.Total <= st.Volume.UsedBytes {
			t.Errorf("status volume = %+v, want %d with usage read over SSH\n%s", st.Volume, first.VolumeID, r.stdout)
		}
		if st.Health == "" || st.Context != "dockbridge" {
			t.Errorf("status health line %q, context %q\n%s", st.Health, st.Context, r.stdout)
		}
	})

	t.Run("ssh -- docker info", func(t *testing.T) {
		r := w.must(t, "dockbridge", "ssh", "--name", env, "--", "docker info --format '{{.DockerRootDir}} {{.Driver}}' && docker plugin ls --format '{{.Name}} enabled={{.Enabled}}'")
		if got := strings.TrimSpace(r.stdout); !strings.HasPrefix(got, "/var/lib/docker overlay2") || !strings.Contains(got, "hetzner:latest enabled=true") {
			t.Errorf("docker info on the server: %q, want /var/lib/docker on overlay2 with the hetzner volume plugin", got)
		}
	})

	// The workload: an image made here, a named volume, a hetzner volume, a container using both.
	blob := make([]byte, 4<<20)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	blobFile := filepath.Join(w.root, "blob")
	if err := os.WriteFile(blobFile, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := w.run(ctx, testimage.BusyboxRootfs(t), nil, "--context", "dockbridge", "import", "-", "keep:1"); r.err != nil {
		t.Fatalf("docker import through the context: %s", r)
	}
	w.on(t, env, "volume", "create", "named-data")
	w.on(t, env, "volume", "create", "-d", "hetzner", "-o", "size=10", "hz-data")
	w.on(t, env, "run", "-d", "--name", "keep", "--restart", "unless-stopped",
		"-v", "named-data:/named", "-v", "hz-data:/hz", "keep:1", "busybox", "sleep", "2147483647")
	w.on(t, env, "cp", blobFile, "keep:/named/blob")
	w.on(t, env, "cp", blobFile, "keep:/hz/blob")
	checkBlob(t, w, env, "/named/blob", blob)
	checkBlob(t, w, env, "/hz/blob", blob)
	t.Run("containers can't read the user-data; the hetzner volume works beside them", func(t *testing.T) {
		metadataRefusedToContainers(t, w, env, "keep:1", "hz-data")
	})

	t.Run("docker version latency with and without connection sharing", func(t *testing.T) {
		measure := func(extra []string) time.Duration {
			var ds []time.Duration
			for range 7 {
				r := w.run(ctx, nil, extra, "--context", "dockbridge", "version", "--format", "{{.Server.Version}}")
				if r.err != nil {
					t.Fatalf("docker version: %s", r)
				}
				ds = append(ds, r.took)
			}
			return median(ds)
		}
		shared := measure(nil)
		alone := measure([]string{"E2E_SSH_OPTS=-o ControlMaster=no -o ControlPath=none"})
		t.Logf("docker --context dockbridge version, median of 7: %v with ControlMaster, %v without: %.1fx",
			shared.Round(time.Millisecond), alone.Round(time.Millisecond), float64(alone)/float64(shared))
	})

	var down requests
	down = w.requests.spent(func() { w.must(t, "dockbridge", "down", "--name", env) })
	t.Logf("down: API requests %s", down)
	if s, _, err := w.api.Server.GetByID(ctx, first.ServerID); err != nil || s != nil {
		t.Fatalf("server %d after down: %v, %v; want it deleted", first.ServerID, s, err)
	}

	second, spent := w.up(t, env)
	logUp(t, "up after down (new server, same data volume)", second, spent)
	if !second.ServerCreated || second.ServerID == first.ServerID || second.VolumeID != first.VolumeID {
		t.Fatalf("up after down: %+v, want a new server with volume %d", second, first.VolumeID)
	}

	t.Run("everything is still there", func(t *testing.T) {
		// The container comes back by its restart policy once dockerd and the plugin are up.
		deadline := time.Now().Add(90 * time.Second)
		for {
			ps := w.on(t, env, "ps", "-a", "--format", "{{.Names}} {{.Status}}")
			if strings.Contains(ps.stdout, "keep Up") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("container keep is not running again after 90s: %s", ps.stdout)
			}
			time.Sleep(time.Second)
		}
		if imgs := w.on(t, env, "images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(imgs.stdout, "keep:1") {
			t.Errorf("images after up: %q, want keep:1", imgs.stdout)
		}
		vols := w.on(t, env, "volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout
		for _, want := range []string{"local named-data", "hetzner:latest hz-data"} {
			if !strings.Contains(vols, want) {
				t.Errorf("volume ls after up: %q, want %q", vols, want)
			}
		}
		checkBlob(t, w, env, "/named/blob", blob)
		checkBlob(t, w, env, "/hz/blob", blob)
	})
	t.Run("the new server: its user-data host key is worthless too, containers can't read the user-data, no token in the plugin's settings", func(t *testing.T) {
		userDataHostKeyIsWorthless(t, w, env, second.ServerID)
		metadataRefusedToContainers(t, w, env, "keep:1", "hz-data")
		tokenNotInPluginSettings(t, w, env)
	})

	t.Run("destroy removes everything of ours and nothing else", func(t *testing.T) {
		// Someone else's server and volume in the same project, without our label.
		foreignVol, _, err := w.api.Volume.Create(ctx, hcloud.VolumeCreateOpts{Name: "precious", Size: 10,
			Location: &hcloud.Location{Name: "fsn1"}, Labels: map[string]string{"owner": "someone"}})
		if err != nil {
			t.Fatal(err)
		}
		foreignSrv, _, err := w.api.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "not-ours",
			ServerType: &hcloud.ServerType{Name: "cx23"}, Image: &hcloud.Image{Name: "debian-12"},
			Location: &hcloud.Location{Name: "fsn1"}, Labels: map[string]string{"owner": "someone"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.api.Action.WaitFor(ctx, foreignSrv.Action); err != nil {
			t.Fatal(err)
		}

		r := w.must(t, "dockbridge", "destroy", "--name", env, "--volumes", "--yes")
		t.Logf("destroy:\n%s%s", r.stderr, r.stdout)
		if left := w.ours(t); len(left) > 0 {
			t.Errorf("destroy left resources with our label: %v", left)
		}
		if v, _, err := w.api.Volume.GetByID(ctx, foreignVol.Volume.ID); err != nil || v == nil {
			t.Errorf("destroy deleted the foreign volume: %v", err)
		}
		if s, _, err := w.api.Server.GetByID(ctx, foreignSrv.Server.ID); err != nil || s == nil {
			t.Errorf("destroy deleted the foreign server: %v", err)
		}
		if ls := w.must(t, "context", "ls", "--format", "{{.Name}}"); strings.Contains(ls.stdout, "dockbridge") {
			t.Errorf("docker context still there after destroy: %q", ls.stdout)
		}
	})
}

// logUp prints the figures of one up: wall time, the waits, our own overhead, API requests.
func logUp(t *testing.T, what string, r upResult, spent requests) {
	t.Helper()
	var wait float64
	var b strings.Builder
	for _, s := range r.Steps {
		b.WriteString("\n    " + s.Title + ": " + time.Duration(s.Seconds*float64(time.Second)).Round(time.Millisecond).String())
		if s.Title == "Server" || strings.HasPrefix(s.Title, "Waiting for") {
			wait += s.Seconds
		}
	}
	t.Logf("%s: %.2fs, of which waiting for the server's create action, SSH and cloud-init %.2fs, our own %.2fs; API requests %s%s",
		what, r.Seconds, wait, r.Seconds-wait, spent, b.String())
}

// checkBlob reads path out of the keep container (docker cp, a tar stream) and compares it
// byte for byte.
func checkBlob(t *testing.T, w *world, env, path string, want []byte) {
	t.Helper()
	r := w.on(t, env, "cp", "keep:"+path, "-")
	tr := tar.NewReader(strings.NewReader(r.stdout))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("docker cp keep:%s: no file in the archive", path)
		}
		if err != nil {
			t.Fatalf("docker cp keep:%s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		got, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes read back differ from the %d written", path, len(got), len(want))
		}
		return
	}
}
