package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/cloudinit"
	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/idleagent"
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
	// What the server's idle agent decided at its last look: idle (nothing keeps the server
	// up), since when, when it goes down (null: not while busy, or the timeout is off) and
	// what keeps it up. Without a server: idle, and nothing more.
	Idle        bool       `json:"idle"`
	IdleSince   *time.Time `json:"idle_since"`
	DownAt      *time.Time `json:"down_at"`
	KeepingUp   []string   `json:"keeping_up"`
	IdleTimeout string     `json:"idle_timeout"`
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
	res = &Status{Env: env, Context: ContextName(env), Host: ContextHost(env), KeepingUp: []string{}}
	if es, err := LoadEnvSettings(d.Paths, env); err == nil {
		res.IdleTimeout, _ = es.Get("idle_timeout")
	}
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
		res.Idle = true
		note := "no server: nothing is billed for compute; the next docker command through the context " + ContextName(env) + " starts one (or `docker dockbridge up" + nameFlag(env) + "`)"
		switch {
		case len(servers) > 0:
			res.Idle = false
			note = "node 1 has no server"
		case res.Nodes != nil:
			note = "no servers: nothing is billed for compute; the next docker command through the context " + ContextName(env) + " starts every node (or `docker dockbridge up" + nameFlag(env) + "`)"
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
	// The idle agent's probe says it all and is no activity (any other command would be).
	out, err := r.Run(ctx, idleagent.ProbeCommand, nil)
	var re *RemoteError
	if err == nil || (errors.As(err, &re) && re.ExitCode != 127) {
		var p idleagent.ProbeReport
		if jerr := json.Unmarshal(out, &p); jerr != nil {
			return fmt.Errorf("the idle agent's report: %v (%v)", jerr, err)
		}
		applyProbe(d, res, p)
		// The probe marked this connection as dockbridge's own: this is no activity either.
		if bs, err := backupStatus(ctx, r); err != nil {
			res.Notes = append(res.Notes, err.Error())
		} else {
			res.Backups = bs
		}
		return nil
	}
	if res.Nodes != nil {
		res.Notes = append(res.Notes, "no idle agent on node 1 (the swarm was set up by an older docker dockbridge): it will not go down by itself; `docker dockbridge up"+nameFlag(env)+"` installs the agents on every node")
	} else {
		res.Notes = append(res.Notes, "no idle agent on the server (it was set up by an older docker dockbridge): it will not go down by itself; `docker dockbridge up"+nameFlag(env)+"` installs it")
	}
	out, err = r.Run(ctx, fmt.Sprintf(`echo "df=$(df -B1 --output=size,used %s 2>/dev/null | tail -n 1)"; echo "health=$(tail -n 1 %s 2>/dev/null)"`, cloudinit.DefaultMountPoint, cloudinit.HealthLogPath), nil)
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

// applyProbe puts what the server's probe said into the status.
func applyProbe(d *Deps, res *Status, p idleagent.ProbeReport) {
	res.Health = p.HealthLastLine
	if p.DiskTotalBytes > 0 {
		res.Volume.TotalBytes, res.Volume.UsedBytes = p.DiskTotalBytes, p.DiskUsedBytes
		res.Volume.UsedPct = math.Round(float64(p.DiskUsedBytes)*1000/float64(p.DiskTotalBytes)) / 10
	}
	if p.StateError != "" {
		res.Notes = append(res.Notes, "idle agent: "+p.StateError)
		return
	}
	res.Idle, res.KeepingUp, res.IdleTimeout = p.Idle, p.KeepingUp, p.Timeout
	if res.KeepingUp == nil {
		res.KeepingUp = []string{}
	}
	if !p.IdleSince.IsZero() {
		t := p.IdleSince.UTC()
		res.IdleSince = &t
	}
	if !p.DownAt.IsZero() {
		t := p.DownAt.UTC()
		res.DownAt = &t
	}
	if !p.AgentRunning || d.Now().Sub(p.Updated) > time.Minute {
		res.Notes = append(res.Notes, fmt.Sprintf("the idle agent is not running (last look %s): the server will not go down by itself; `docker dockbridge ssh -- journalctl -u %s` says why, `docker dockbridge up` starts it again",
			p.Updated.UTC().Format(time.RFC3339), idleagent.UnitName))
	}
	if p.Phase != "" && p.Phase != idleagent.PhaseWatching {
		res.Notes = append(res.Notes, "the server is "+p.Phase+" (idle, deleting itself)")
	}
	if p.Note != "" {
		res.Notes = append(res.Notes, "idle agent: "+p.Note)
	}
}
