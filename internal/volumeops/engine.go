// Package volumeops does volume work through the Docker Engine API of the current context,
// local or remote: list, inspect, check and measure volumes, back them up and restore them.
// A volume's files are read and written by a helper container (an image made on the fly from
// our own static binary, never pulled) with the volume mounted at /data; the archive streams
// over the container's attach connection.
package volumeops

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/volume"
	"github.com/moby/moby/client"
)

// API is the part of the engine client we use.
type API interface {
	client.ContainerAPIClient
	client.ExecAPIClient
	client.ImageAPIClient
	client.VolumeAPIClient
	client.SystemAPIClient
}

// Engine talks to one Docker engine.
type Engine struct {
	API API
	// Context is the docker context's name, recorded in backups.
	Context string
	// HelperBinary is a static Linux binary containing the helper package, for the engine's
	// architecture; default: $DOCKBRIDGE_HELPER_BINARY, else the server binary this CLI
	// carries for the engine's architecture (internal/serverbin), else this executable.
	HelperBinary string
	// Progress receives one line per step (stderr); nil: silent.
	Progress io.Writer
	// OnStop, when set, is called before a container is stopped for a backup or restore (one
	// that is to be started again), and OnRestarted after the stopped containers were started
	// again, with what failed: the host's scheduled runs keep a journal with them, so that a
	// run that was killed in between has its containers started by the next one.
	OnStop      func(ContainerRef) error
	OnRestarted func(error)

	helperRef string // the helper image, once known
}

func (e *Engine) progressf(format string, args ...any) {
	if e.Progress != nil {
		fmt.Fprintf(e.Progress, format+"\n", args...)
	}
}

// Volume is a volume with what we know about it.
type Volume struct {
	Name       string            `json:"name"`
	Driver     string            `json:"driver"`
	Scope      string            `json:"scope,omitempty"`
	Mountpoint string            `json:"mountpoint,omitempty"`
	CreatedAt  string            `json:"created_at,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Options    map[string]string `json:"options,omitempty"`
	Status     map[string]any    `json:"status,omitempty"`
	// UsedBytes is -1 when unknown.
	UsedBytes int64 `json:"used_bytes"`
	// Hetzner is set for volumes of the hetzner driver (from the volume's Status).
	Hetzner *HetznerInfo `json:"hetzner,omitempty"`
}

// HetznerInfo is what the hetzner volume plugin reports in a volume's Status.
type HetznerInfo struct {
	ID       int64  `json:"id"`
	SizeGB   int64  `json:"size_gb"`
	Location string `json:"location,omitempty"`
	Server   string `json:"server,omitempty"`
	Device   string `json:"device,omitempty"`
}

// IsHetznerDriver reports whether driver is the hetzner plugin ("hetzner", "hetzner:latest").
func IsHetznerDriver(driver string) bool {
	name, _, _ := strings.Cut(driver, ":")
	return name == "hetzner" || strings.HasSuffix(name, "/hetzner")
}

func fromAPI(v volume.Volume) Volume {
	out := Volume{Name: v.Name, Driver: v.Driver, Scope: v.Scope, Mountpoint: v.Mountpoint,
		CreatedAt: v.CreatedAt, Labels: v.Labels, Options: v.Options, Status: v.Status, UsedBytes: -1}
	if v.UsageData != nil && v.UsageData.Size >= 0 {
		out.UsedBytes = v.UsageData.Size
	}
	if IsHetznerDriver(v.Driver) && v.Status != nil {
		h := &HetznerInfo{ID: num(v.Status["hetzner_id"]), SizeGB: num(v.Status["size_gb"]),
			Location: str(v.Status["location"]), Server: str(v.Status["server"]), Device: str(v.Status["device"])}
		out.Hetzner = h
		if u := num(v.Status["used_bytes"]); u > 0 && out.UsedBytes < 0 {
			out.UsedBytes = u
		}
	}
	return out
}

func num(v any) int64 {
	switch n := v.(type) {
	case float64:
		return int64(n)
	case int64:
		return n
	case int:
		return int64(n)
	case string:
		var i int64
		fmt.Sscan(n, &i)
		return i
	}
	return 0
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// ListVolumes lists every volume with its usage where the engine knows it (the local driver,
// from `docker system df`) and, for hetzner volumes, the Hetzner id and size.
func (e *Engine) ListVolumes(ctx context.Context) ([]Volume, error) {
	res, err := e.API.VolumeList(ctx, client.VolumeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	usage := map[string]int64{}
	if du, err := e.API.DiskUsage(ctx, client.DiskUsageOptions{Volumes: true, Verbose: true}); err == nil {
		for _, v := range du.Volumes.Items {
			if v.UsageData != nil {
				usage[v.Name] = v.UsageData.Size
			}
		}
	}
	var out []Volume
	for _, v := range res.Items {
		if IsHetznerDriver(v.Driver) {
			// List does not carry the plugin's Status; inspect does.
			if r, err := e.API.VolumeInspect(ctx, v.Name, client.VolumeInspectOptions{}); err == nil {
				v = r.Volume
			}
		}
		vol := fromAPI(v)
		if u, ok := usage[v.Name]; ok && u >= 0 {
			vol.UsedBytes = u
		}
		out = append(out, vol)
	}
	slices.SortFunc(out, func(a, b Volume) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// InspectVolume returns one volume.
func (e *Engine) InspectVolume(ctx context.Context, name string) (Volume, error) {
	r, err := e.API.VolumeInspect(ctx, name, client.VolumeInspectOptions{})
	if err != nil {
		return Volume{}, fmt.Errorf("inspect volume %s: %w", name, err)
	}
	return fromAPI(r.Volume), nil
}

// ContainerRef is a container using a volume.
type ContainerRef struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	State   string `json:"state"`
	Created int64  `json:"created"`
	Mount   string `json:"mount,omitempty"` // where the volume is mounted
	RW      bool   `json:"rw"`
}

// ContainersUsing lists the containers (running or not) that mount volume, helpers excluded.
func (e *Engine) ContainersUsing(ctx context.Context, vol string) ([]ContainerRef, error) {
	res, err := e.API.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("volume", vol)})
	if err != nil {
		return nil, fmt.Errorf("list containers using %s: %w", vol, err)
	}
	var out []ContainerRef
	for _, c := range res.Items {
		if c.Labels[helperLabel] != "" {
			continue
		}
		ref := ContainerRef{ID: c.ID, State: string(c.State), Created: c.Created}
		if len(c.Names) > 0 {
			ref.Name = strings.TrimPrefix(c.Names[0], "/")
		}
		for _, m := range c.Mounts {
			if m.Name == vol {
				ref.Mount, ref.RW = m.Destination, m.RW
			}
		}
		out = append(out, ref)
	}
	slices.SortFunc(out, func(a, b ContainerRef) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func isRunning(state string) bool {
	return state == string(container.StateRunning) || state == string(container.StateRestarting) || state == string(container.StatePaused)
}
