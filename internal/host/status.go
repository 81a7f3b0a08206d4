package host

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/cloudinit"
	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/schedule"
)

// Status is what `status` shows (and `-o json` prints).
type Status struct {
	Env     string        `json:"env"`
	Context string        `json:"context"`
	Host    string        `json:"context_host"`
	Server  *ServerStatus `json:"server"`
	Volume  *VolumeStatus `json:"volume"`
	Health  string        `json:"health_last_line,omitempty"`
	// Backups is every volume's backup state on the server (its schedules), when it has any.
	Backups *schedule.Status `json:"backups,omitempty"`
	// Nodes are the servers of a multi-server environment (Swarm); Server and Volume are then
	// node 1's (the manager the context uses).
	Nodes []NodeStatus `json:"nodes,omitempty"`
	Notes []string     `json:"notes,omitempty"`
}

// ServerStatus describes the running server and what it costs.
type ServerStatus struct {
	ID            int64     `json:"id"`
	Name          string    `json:"name"`
	Status        string    `json:"status"`
	Type          string    `json:"type"`
	Location      string    `json:"location"`
	IPv4          string    `json:"ipv4"`
	Created       time.Time `json:"created"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Currency      string    `json:"currency,omitempty"`
	PricePerHour  float64   `json:"price_per_hour"`
	BilledHours   int64     `json:"billed_hours"`
	CostSoFar     float64   `json:"cost_so_far"`
	// TypeUnavailableAfter is set when the server's type is deprecated in its location.
	TypeUnavailableAfter time.Time `json:"type_unavailable_after,omitzero"`
}

// VolumeStatus describes the data volume.
type VolumeStatus struct {
	ID         int64   `json:"id"`
	Name       string  `json:"name"`
	SizeGB     int     `json:"size_gb"`
	Location   string  `json:"location"`
	AttachedTo int64   `json:"attached_to_server,omitempty"`
	UsedBytes  int64   `json:"used_bytes,omitempty"`
	TotalBytes int64   `json:"total_bytes,omitempty"`
	UsedPct    float64 `json:"used_percent,omitempty"`
}

// GetStatus asks the API (servers, volumes, pricing: 3 requests) and, when the server
// runs, the server itself over SSH (disk usage, last health-check line).
func GetStatus(ctx context.Context, d *Deps, env string) (res *Status, err error) {
	d.defaults()
	if err := ValidateEnvName(env); err != nil {
		return nil, err
	}
	defer func() { err = d.explainAPI(err) }()
	res = &Status{Env: env, Context: ContextName(env), Host: ContextHost(env)}
	servers, err := d.API.Servers(ctx, selector(env, RoleServer))
	if err != nil {
		return res, err
	}
	vols, err := d.API.Volumes(ctx, selector(env, RoleDataRoot))
	if err != nil {
		return res, err
	}
	node1 := func(l map[string]string) bool { n, err := nodeOf(l); return err == nil && n == 1 }
	for _, v := range vols {
		if node1(v.Labels) {
			res.Volume = &VolumeStatus{ID: v.ID, Name: v.Name, SizeGB: v.SizeGB, Location: v.Location, AttachedTo: v.ServerID}
		}
		if v.Labels[LabelSwarm] != "" && res.Nodes == nil {
			var notes []string
			res.Nodes, notes = nodeStatuses(ctx, d, env, servers, vols)
			res.Notes = append(res.Notes, notes...)
		}
	}
	var s *hetzner.Server
	for _, srv := range servers {
		if node1(srv.Labels) {
			s = srv
		}
	}
	if s == nil {
		note := "no server: nothing is billed for compute; `docker dockbridge up" + nameFlag(env) + "` starts one"
		if len(servers) > 0 {
			note = "node 1 has no server"
		}
		res.Notes = append(res.Notes, note)
		return res, nil
	}
	now := d.Now()
	up := now.Sub(s.Created)
	if up < 0 {
		up = 0
	}
	ss := &ServerStatus{ID: s.ID, Name: s.Name, Status: s.Status, Type: s.ServerType, Location: s.Location, IPv4: s.IPv4, Created: s.Created, UptimeSeconds: int64(up.Seconds())}
	res.Server = ss
	if !s.TypeUnavailableAfter.IsZero() {
		ss.TypeUnavailableAfter = s.TypeUnavailableAfter
		when := "it can no longer be ordered there"
		if now.Before(s.TypeUnavailableAfter) {
			when = "it becomes unavailable there after " + s.TypeUnavailableAfter.UTC().Format(time.DateOnly)
		}
		res.Notes = append(res.Notes, fmt.Sprintf("warning: server type %s is deprecated in %s: %s. This server keeps running, but a new one (up after down) needs another type: unset server_type to let up choose, or choose one with --server-type",
			s.ServerType, s.Location, when))
	}
	if p, err := d.API.Prices(ctx, s.ServerType, s.Location); err != nil {
		res.Notes = append(res.Notes, "price unknown: "+err.Error())
	} else {
		ss.Currency, ss.PricePerHour = p.Currency, p.ServerHourly
		// Hetzner bills every started hour, up to the monthly price.
		ss.BilledHours = int64(math.Ceil(up.Hours()))
		if ss.BilledHours < 1 {
			ss.BilledHours = 1
		}
		ss.CostSoFar = math.Min(float64(ss.BilledHours)*p.ServerHourly, p.ServerMonthly)
	}
	if s.Status == "running" && res.Volume != nil {
		if err := remoteStatus(ctx, d, env, s, res); err != nil {
			res.Notes = append(res.Notes, "over SSH: "+err.Error())
		}
	}
	return res, nil
}

// dialServer connects to the environment's running server s with the pinned host key.
func dialServer(ctx context.Context, d *Deps, env string, s *hetzner.Server) (Remote, error) {
	t, err := serverTarget(d, env, s)
	if err != nil {
		return nil, err
	}
	return d.Dial(ctx, t)
}

func remoteStatus(ctx context.Context, d *Deps, env string, s *hetzner.Server, res *Status) error {
	t, err := serverTarget(d, env, s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	r, err := d.Dial(ctx, t)
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := r.Run(ctx, fmt.Sprintf(`echo "df=$(df -B1 --output=size,used %s 2>/dev/null | tail -n 1)"; echo "health=$(tail -n 1 %s 2>/dev/null)"`, cloudinit.DefaultMountPoint, cloudinit.HealthLogPath), nil)
	if err != nil {
		return err
	}
	kv := parseKV(out)
	res.Health = kv["health"]
	if bs, err := backupStatus(ctx, r); err != nil {
		res.Notes = append(res.Notes, err.Error())
	} else {
		res.Backups = bs
	}
	if f := strings.Fields(kv["df"]); len(f) == 2 {
		total, err1 := strconv.ParseInt(f[0], 10, 64)
		used, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 == nil && err2 == nil && total > 0 {
			res.Volume.TotalBytes, res.Volume.UsedBytes = total, used
			res.Volume.UsedPct = math.Round(float64(used)*1000/float64(total)) / 10
		}
	}
	return nil
}
