package linkserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dockbridge/dockbridge/internal/link"
)

// DockerSocket is the engine's API socket on the server.
const DockerSocket = "/var/run/docker.sock"

// container is what the port watch reads of GET /containers/json.
type container struct {
	ID    string   `json:"Id"`
	Names []string `json:"Names"`
	Ports []struct {
		IP          string `json:"IP"`
		PrivatePort int    `json:"PrivatePort"`
		PublicPort  int    `json:"PublicPort"`
		Type        string `json:"Type"`
	} `json:"Ports"`
}

// PublishedPorts is the set of TCP ports the running containers publish on the server, one
// entry per port (Docker lists a port twice, for IPv4 and IPv6), sorted. UDP cannot go through an
// SSH forward and is left out.
func PublishedPorts(cs []container) []link.Port {
	byPort := map[int]*link.Port{}
	for _, c := range cs {
		name := c.ID
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		for _, p := range c.Ports {
			if p.Type != "tcp" || p.PublicPort == 0 {
				continue
			}
			e, ok := byPort[p.PublicPort]
			if !ok {
				e = &link.Port{Port: p.PublicPort, HostIP: p.IP}
				byPort[p.PublicPort] = e
			}
			// A port on every address (0.0.0.0 or ::) wins over a narrower one.
			if p.IP == "0.0.0.0" || (p.IP == "::" && e.HostIP != "0.0.0.0") {
				e.HostIP = p.IP
			}
			if !slices.Contains(e.Containers, name) {
				e.Containers = append(e.Containers, name)
			}
		}
	}
	out := make([]link.Port, 0, len(byPort))
	for _, p := range byPort {
		slices.Sort(p.Containers)
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b link.Port) int { return a.Port - b.Port })
	return out
}

// engine is a small client of the Docker Engine API on its unix socket.
type engine struct{ hc *http.Client }

func newEngine(socket string) *engine {
	return &engine{hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

func (e *engine) containers(ctx context.Context) ([]container, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/containers/json", nil)
	resp, err := e.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /containers/json: %s", resp.Status)
	}
	var cs []container
	return cs, json.NewDecoder(resp.Body).Decode(&cs)
}

// events calls changed for every container event that can change the published ports, until the
// stream ends (the engine stopped) or ctx does.
func (e *engine) events(ctx context.Context, ready func(), changed func()) error {
	filters := `{"type":["container"],"event":["start","die","stop","kill","destroy","rename","unpause","pause","restart"]}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/events?filters="+url.QueryEscape(filters), nil)
	resp, err := e.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /events: %s", resp.Status)
	}
	ready()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		changed()
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("the engine's event stream ended")
}

// WatchPorts sends the published ports whenever they change, and the engine's state when it
// stops and starts again (the clean stop of down, or the idle self-delete, stops it), until ctx
// ends. Events are gathered for 100 ms before the containers are listed again.
func WatchPorts(ctx context.Context, socket string, send func(link.Message) error) {
	e := newEngine(socket)
	var mu sync.Mutex
	var last []link.Port
	sentEngine := ""
	engineState := func(s string) {
		if s != sentEngine {
			sentEngine = s
			_ = send(link.Message{Type: link.TypeEngine, Engine: s})
		}
	}
	list := func() {
		mu.Lock()
		defer mu.Unlock()
		cs, err := e.containers(ctx)
		if err != nil {
			return
		}
		ports := PublishedPorts(cs)
		if last == nil || !slices.EqualFunc(ports, last, func(a, b link.Port) bool {
			return a.Port == b.Port && a.HostIP == b.HostIP && slices.Equal(a.Containers, b.Containers)
		}) {
			last = ports
			_ = send(link.Message{Type: link.TypePorts, Ports: ports})
		}
	}
	for ctx.Err() == nil {
		if !EngineRunning() {
			// Not even a connection to the socket: systemd's docker.socket would start Docker.
			if sentEngine != "stopped" {
				engineState("stopped")
				mu.Lock()
				last = []link.Port{}
				mu.Unlock()
				_ = send(link.Message{Type: link.TypePorts, Ports: []link.Port{}})
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		kick := make(chan struct{}, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTimer(time.Hour)
			t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case _, ok := <-kick:
					if !ok {
						return
					}
					t.Reset(100 * time.Millisecond)
				case <-t.C:
					list()
				}
			}
		}()
		err := e.events(ctx, func() {
			engineState("running")
			list()
		}, func() {
			select {
			case kick <- struct{}{}:
			default:
			}
		})
		close(kick)
		<-done
		if ctx.Err() != nil {
			return
		}
		_ = err
		if sentEngine == "running" || sentEngine == "" {
			engineState("stopped")
			mu.Lock()
			last = []link.Port{}
			mu.Unlock()
			_ = send(link.Message{Type: link.TypePorts, Ports: []link.Port{}})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// DockerPIDFile is where dockerd writes its process id while it runs.
var DockerPIDFile = "/var/run/docker.pid"

// EngineRunning reports whether dockerd runs, from its pid file, without touching its socket
// (a connection to docker.socket would start Docker while the clean stop has it stopped).
func EngineRunning() bool {
	b, err := os.ReadFile(DockerPIDFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}
