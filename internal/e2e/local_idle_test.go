//go:build linux

package e2e_test

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockbridge/dockbridge/internal/testimage"
)

// TestForwardInUseKeepsTheServerUp: with the idle tests' short times (10 s idle timeout, 40 s
// billing periods), requests through a port forward keep the server up for longer than a
// period (each is a moment of activity: status's idle_since follows them), and so does a
// connection left open through it (ongoing: status lists it as keeping the server up); once its
// container stops, the forward is dead (requests to its port, still made, reach nothing) and the
// server goes down idle; the laptop's agent is told and waits for the next server, and after
// the wake the next docker command makes, the port answers here again.
func TestForwardInUseKeepsTheServerUp(t *testing.T) {
	w := newWorld(t)
	const env = "fwdidle"
	res := w.idleUp(t, env)
	if r := w.run(t.Context(), testimage.BusyboxRootfs(t), nil, "--context", contextName(env), "import", "-", "bb:1"); r.err != nil {
		t.Fatalf("docker import: %s", r)
	}
	const port = 18081
	w.on(t, env, "run", "-d", "--name", "web", "-p", fmt.Sprintf("%d:80", port), "bb:1",
		"sh", "-c", "mkdir -p /www && echo hello-from-the-server > /www/index.html && exec busybox httpd -f -p 80 -h /www")
	var addr string
	eventually(t, 20*time.Second, "the published port forwarded", func() bool {
		addr = w.ports(t, env).localAddr(port)
		return addr != ""
	})

	// In use: a request every 2 s, for longer than a billing period.
	inUse := time.Now()
	var answered, refused atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Second):
			}
			if body, err := httpGet(addr); err == nil && strings.TrimSpace(body) == "hello-from-the-server" {
				answered.Add(1)
			} else {
				refused.Add(1)
			}
		}
	}()
	w.stillUpFor(t, env, res.ServerID, idlePeriod+5*time.Second, "while requests went through a port forward")
	if st := w.idleStatus(t, env); st.IdleSince == nil || !st.IdleSince.After(inUse.Add(idlePeriod)) {
		t.Errorf("status's idle_since does not follow the requests through the forward (they began at %s): %+v", inUse.UTC().Format(time.TimeOnly), st)
	}
	if answered.Load() < 15 {
		t.Fatalf("only %d requests through the forward were answered (%d not)", answered.Load(), refused.Load())
	}
	close(stop)
	<-done

	// A connection open through it, carrying nothing, is use too (a browser's keep-alive, a
	// database client): the server's agent says so.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, "status to show the connection open through the forward", func() bool {
		return keepingUp(w.idleStatus(t, env), "open through the laptop's port forwards")
	})
	w.stillUpFor(t, env, res.ServerID, idlePeriod+5*time.Second, "while a connection was open through a port forward")

	// Dead: the container stops, the forward goes, the open connection is closed, and requests
	// to the forward's port (still made every 2 s) reach nothing. The server goes down idle.
	w.on(t, env, "stop", "-t", "1", "web")
	eventually(t, 20*time.Second, "the forward gone after the container stopped", func() bool {
		return w.ports(t, env).localAddr(port) == ""
	})
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); err == nil || n > 0 {
		t.Fatalf("the connection open through the forward is still open after its container stopped (read %d, %v)", n, err)
	}
	answered.Store(0)
	stop, done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Second):
			}
			if _, err := httpGet(addr); err == nil {
				answered.Add(1)
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()
	waitFor(t, "status to show the server idle with the forward dead", func() bool {
		st := w.idleStatus(t, env)
		return st.Idle && len(st.KeepingUp) == 0
	})
	w.waitGone(t, env, 3*idlePeriod)
	close(stop)
	<-done
	if answered.Load() != 0 {
		t.Errorf("%d requests to the dead forward were answered", answered.Load())
	}
	eventually(t, 10*time.Second, "the laptop's agent waiting with no forwards after the server went down", func() bool {
		p := w.ports(t, env)
		return p.State == "waiting" && len(p.Ports) == 0
	})

	// The next docker command wakes a server; the container started again, its port answers
	// here again (the forward survives the wake).
	w.on(t, env, "start", "web")
	eventually(t, time.Minute, "an answer through the forward after the wake", func() bool {
		a := w.ports(t, env).localAddr(port)
		if a == "" {
			return false
		}
		body, err := httpGet(a)
		return err == nil && strings.TrimSpace(body) == "hello-from-the-server"
	})
}
