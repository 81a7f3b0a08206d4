package idleagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// KeepAliveLabel on a running container keeps the server up (value "true"): a job that must
// finish although nobody watches it. Other containers, a compose stack left running overnight
// included, do not.
const KeepAliveLabel = "dockbridge.keep-alive"

// KeepAlive watches the running containers labelled KeepAliveLabel=true through the Docker
// Engine API on Socket. Docker not running is no error: no container runs then.
type KeepAlive struct {
	Socket string // default /var/run/docker.sock
	client *http.Client
}

func (k *KeepAlive) Name() string { return "containers" }

func (k *KeepAlive) Look(ctx context.Context, _ time.Time) (Look, error) {
	var look Look
	if k.client == nil {
		sock := k.Socket
		if sock == "" {
			sock = "/var/run/docker.sock"
		}
		k.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
		}}
	}
	filters, _ := json.Marshal(map[string][]string{"label": {KeepAliveLabel + "=true"}, "status": {"running"}})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/containers/json?filters="+url.QueryEscape(string(filters)), nil)
	if err != nil {
		return look, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return look, nil // Docker is not running: nothing runs in it
		}
		return look, fmt.Errorf("list the containers labelled %s=true: %w", KeepAliveLabel, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return look, fmt.Errorf("list the containers labelled %s=true: %s", KeepAliveLabel, resp.Status)
	}
	var list []struct {
		ID    string   `json:"Id"`
		Names []string `json:"Names"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return look, fmt.Errorf("list the containers labelled %s=true: %w", KeepAliveLabel, err)
	}
	for _, c := range list {
		name := c.ID
		if len(name) > 12 {
			name = name[:12]
		}
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		look.ongoing("container:"+c.ID, fmt.Sprintf("container %s (%s=true)", name, KeepAliveLabel))
	}
	return look, nil
}
