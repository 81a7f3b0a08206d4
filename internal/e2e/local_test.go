package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/testimage"
)

// Feels local (issue 18) on servers that really boot: a container's published port answers on
// this machine's loopback through the environment's shared SSH connection, stops answering when
// the container stops, and answers again after down and up; a compose service binds a shared
// folder of this machine and edits, new files and deletes go both ways; a bind of a folder that
// is not shared is refused with an error naming the fix.

// portsJSON is `ports -o json`.
type portsJSON struct {
	State string `json:"state"`
	Ports []struct {
		Local      string   `json:"local"`
		Port       int      `json:"port"`
		Containers []string `json:"containers"`
		Note       string   `json:"note"`
	} `json:"ports"`
}

func (w *world) ports(t testing.TB, env string) portsJSON {
	t.Helper()
	var p portsJSON
	r := w.must(t, "dockbridge", "ports", "--name", env, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("ports -o json: %v\n%s", err, r.stdout)
	}
	return p
}

// localAddr is where server port answers on this machine ("" while it is not forwarded).
func (p portsJSON) localAddr(port int) string {
	for _, x := range p.Ports {
		if x.Port == port && x.Local != "" {
			return strings.Replace(x.Local, "localhost:", "127.0.0.1:", 1)
		}
	}
	return ""
}

func httpGet(addr string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/index.html")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// eventually polls cond every 100 ms for up to d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPortsFollowContainersAndComeBackAfterDownUp(t *testing.T) {
	w := newWorld(t)
	const env = "ports"
	w.up(t, env)
	if r := w.run(t.Context(), testimage.BusyboxRootfs(t), nil, "--context", contextName(env), "import", "-", "bb:1"); r.err != nil {
		t.Fatalf("docker import: %s", r)
	}
	const port = 18080
	w.on(t, env, "run", "-d", "--name", "web", "--restart", "unless-stopped", "-p", fmt.Sprintf("%d:80", port), "bb:1",
		"sh", "-c", "mkdir -p /www && echo hello-from-the-server > /www/index.html && exec busybox httpd -f -p 80 -h /www")

	var addr string
	eventually(t, 20*time.Second, "the published port forwarded", func() bool {
		addr = w.ports(t, env).localAddr(port)
		return addr != ""
	})
	t.Logf("server port %d answers on %s", port, addr)
	eventually(t, 10*time.Second, "an answer through the forward", func() bool {
		body, err := httpGet(addr)
		return err == nil && strings.TrimSpace(body) == "hello-from-the-server"
	})

	// What went through the forward reaches the server's record, which its idle agent reads as
	// activity (internal/idleagent's Forwards source).
	forwarded := func() (conns int64) {
		r := w.run(t.Context(), nil, nil, "dockbridge", "ssh", "--name", env, "--", "cat /run/dockbridge/forwards.json")
		var rec struct {
			Connections int64 `json:"connections"`
		}
		if r.err == nil && json.Unmarshal([]byte(r.stdout), &rec) == nil {
			return rec.Connections
		}
		return -1
	}
	before := forwarded()
	for range 3 {
		if _, err := httpGet(addr); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "three forwarded connections in the server's record", func() bool { return forwarded() >= before+3 })

	w.on(t, env, "stop", "web")
	eventually(t, 20*time.Second, "the forward gone after the container stopped", func() bool {
		return w.ports(t, env).localAddr(port) == ""
	})
	if _, err := httpGet(addr); err == nil {
		t.Fatal("the port still answers after its container stopped")
	}
	w.on(t, env, "start", "web")
	eventually(t, 20*time.Second, "the forward back after the container started", func() bool {
		addr = w.ports(t, env).localAddr(port)
		return addr != ""
	})

	// down: the agent waits (no forwards, no reconnection to a server that goes); up: a new
	// server, the container comes back (restart policy), and so does its port.
	w.must(t, "dockbridge", "down", "--name", env)
	if p := w.ports(t, env); p.State != "waiting" || len(p.Ports) != 0 {
		t.Fatalf("after down: agent %s with %d forwards, want waiting with none", p.State, len(p.Ports))
	}
	w.up(t, env)
	eventually(t, 60*time.Second, "the forward after down and up", func() bool {
		addr = w.ports(t, env).localAddr(port)
		return addr != ""
	})
	eventually(t, 20*time.Second, "an answer through the forward after down and up", func() bool {
		body, err := httpGet(addr)
		return err == nil && strings.TrimSpace(body) == "hello-from-the-server"
	})

	t.Run("up --no-forward turns it off", func(t *testing.T) {
		w.up(t, env, "--no-forward")
		if _, err := httpGet(addr); err == nil {
			t.Fatal("the port still answers after up --no-forward")
		}
		w.up(t, env)
		eventually(t, 20*time.Second, "the forward back after up", func() bool {
			body, err := httpGet(w.ports(t, env).localAddr(port))
			return err == nil && strings.TrimSpace(body) == "hello-from-the-server"
		})
	})
}

func TestComposeBindsASharedFolderBothWays(t *testing.T) {
	w := newWorld(t)
	const env = "share"
	w.up(t, env)
	if r := w.run(t.Context(), testimage.BusyboxRootfs(t), nil, "--context", contextName(env), "import", "-", "bb:1"); r.err != nil {
		t.Fatalf("docker import: %s", r)
	}

	// A folder that is not shared: refused, with the fix named, not an empty directory.
	notShared := filepath.Join(w.root, "not-shared")
	if err := os.MkdirAll(notShared, 0o755); err != nil {
		t.Fatal(err)
	}
	r := w.run(t.Context(), nil, nil, "--context", contextName(env), "run", "--rm", "-v", notShared+":/app", "bb:1", "busybox", "ls", "/app")
	if r.err == nil || !strings.Contains(r.stderr, "not shared") || !strings.Contains(r.stderr, "docker dockbridge share add "+notShared) {
		t.Fatalf("a bind of a folder that is not shared: want a refusal naming `docker dockbridge share add`, got %s", r)
	}

	project := filepath.Join(w.root, "project")
	for _, f := range []struct{ name, body string }{
		{"index.html", "v1"}, {"src/a.txt", "a"}, {"src/b.txt", "b"},
		{"docker-compose.yml", "version: \"2.4\"\nservices:\n  app:\n    image: bb:1\n    command: [\"busybox\", \"sleep\", \"2147483647\"]\n    volumes:\n      - .:/app\n"},
	} {
		p := filepath.Join(project, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	add := w.run(t.Context(), nil, nil, "dockbridge", "share", "add", "--name", env, project)
	if add.err != nil {
		t.Fatalf("share add: %s", add)
	}
	t.Logf("share add: %s", strings.TrimSpace(add.stdout))

	// docker-compose 1.x finds contexts beside config.json only.
	if _, err := os.Stat(filepath.Join(w.config, "config.json")); os.IsNotExist(err) {
		if err := os.WriteFile(filepath.Join(w.config, "config.json"), []byte("{}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	compose := func(args ...string) result {
		c := w.cmd(t.Context(), nil, nil)
		c.Path, c.Args = mustLook(t, "docker-compose"), append([]string{"docker-compose", "--context", contextName(env)}, args...)
		c.Dir = project
		var out, errb strings.Builder
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		return result{stdout: out.String(), stderr: errb.String(), err: err}
	}
	if r := compose("up", "-d"); r.err != nil {
		t.Fatalf("docker-compose up: %s", r)
	}
	t.Cleanup(func() { compose("down") })
	inContainer := func(sh string) (string, error) {
		r := w.run(t.Context(), nil, nil, "--context", contextName(env), "exec", "project_app_1", "sh", "-c", sh)
		if r.err != nil {
			return "", fmt.Errorf("%s", r)
		}
		return r.stdout, nil
	}
	if out, err := inContainer("cat /app/index.html /app/src/a.txt"); err != nil || out != "v1a" {
		t.Fatalf("the container sees %q, %v; want the shared folder's files", out, err)
	}

	// A file edited on this machine is seen in the container.
	if err := os.WriteFile(filepath.Join(project, "index.html"), []byte("v2 saved on the laptop"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the laptop's edit in the container", func() bool {
		out, err := inContainer("cat /app/index.html")
		return err == nil && out == "v2 saved on the laptop"
	})
	// A file written by the container is seen here.
	if _, err := inContainer("mkdir -p /app/out && echo built > /app/out/result.txt"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the container's file on the laptop", func() bool {
		b, err := os.ReadFile(filepath.Join(project, "out", "result.txt"))
		return err == nil && string(b) == "built\n"
	})
	// Deletes, both ways.
	if err := os.Remove(filepath.Join(project, "src", "a.txt")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the laptop's delete in the container", func() bool {
		out, err := inContainer("test -e /app/src/a.txt && echo present || echo absent")
		return err == nil && strings.TrimSpace(out) == "absent"
	})
	if _, err := inContainer("rm /app/src/b.txt"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the container's delete on the laptop", func() bool {
		_, err := os.Stat(filepath.Join(project, "src", "b.txt"))
		return os.IsNotExist(err)
	})
	// A folder inside the shared one binds too; its parent does not.
	if out, err := inContainer("ls /app/out"); err != nil || !strings.Contains(out, "result.txt") {
		t.Fatalf("ls /app/out: %q, %v", out, err)
	}
	w.on(t, env, "run", "--rm", "-v", filepath.Join(project, "out")+":/o", "bb:1", "busybox", "cat", "/o/result.txt")
	r = w.run(t.Context(), nil, nil, "--context", contextName(env), "run", "--rm", "-v", w.root+":/x", "bb:1", "busybox", "true")
	if r.err == nil || !strings.Contains(r.stderr, "only "+project) {
		t.Fatalf("a bind of the shared folder's parent: want a refusal naming the shared folder, got %s", r)
	}

	// down and up: a container with a restart policy starts on the new server before up reaches
	// it, and finds the folder's copy there (not an empty directory); the synchronization goes on.
	compose("down")
	w.on(t, env, "run", "-d", "--name", "keeper", "--restart", "unless-stopped", "-v", project+":/app", "bb:1", "busybox", "sleep", "2147483647")
	w.must(t, "dockbridge", "down", "--name", env)
	w.up(t, env)
	keeper := func(sh string) (string, error) {
		r := w.run(t.Context(), nil, nil, "--context", contextName(env), "exec", "keeper", "sh", "-c", sh)
		if r.err != nil {
			return "", fmt.Errorf("%s", r)
		}
		return r.stdout, nil
	}
	if out, err := keeper("cat /app/index.html /app/out/result.txt"); err != nil || out != "v2 saved on the laptopbuilt\n" {
		t.Fatalf("after down and up, the restarted container sees %q, %v", out, err)
	}
	if err := os.WriteFile(filepath.Join(project, "index.html"), []byte("v3 after up"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "an edit after down and up in the container", func() bool {
		out, err := keeper("cat /app/index.html")
		return err == nil && out == "v3 after up"
	})
}

func mustLook(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s is missing: apt-get install docker-compose", tool)
	}
	return p
}
