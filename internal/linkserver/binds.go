package linkserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// The bind check. dockerd creates a missing bind source as an empty directory (`-v` and compose's
// short syntax), so `docker run -v "$PWD":/app` through a remote context silently shows an empty
// server directory. On a dockbridge server an authorization plugin (AuthzPlugin, which `up`
// installs and names in daemon.json) refuses a container whose bind source is none of: a folder in
// a ready shared folder, or something the server itself has (a file, a socket, a directory with
// content). The error names the fix. The label dockbridge.bind=server on the container lets any
// server path through, for one who means the server's own empty directory.

// AuthzPluginName is the plugin's name in daemon.json's authorization-plugins, and its socket
// /run/docker/plugins/<name>.sock.
const AuthzPluginName = "dockbridge-binds"

// ServerBindLabel set to "server" lets a container bind any server path.
const ServerBindLabel = "dockbridge.bind"

// createRequest is what the check reads of a container create's body.
type createRequest struct {
	Labels     map[string]string `json:"Labels"`
	HostConfig struct {
		Binds  []string `json:"Binds"`
		Mounts []struct {
			Type   string `json:"Type"`
			Source string `json:"Source"`
		} `json:"Mounts"`
	} `json:"HostConfig"`
}

// BindSources are the host paths a container create's body binds.
func BindSources(body []byte) (sources []string, serverBinds bool, err error) {
	var req createRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, false, err
	}
	for _, b := range req.HostConfig.Binds {
		src, _, ok := strings.Cut(b, ":")
		if ok && strings.HasPrefix(src, "/") {
			sources = append(sources, src)
		}
	}
	for _, m := range req.HostConfig.Mounts {
		if m.Type == "bind" && strings.HasPrefix(m.Source, "/") {
			sources = append(sources, m.Source)
		}
	}
	return sources, req.Labels[ServerBindLabel] == "server", nil
}

// CheckBind decides one bind source against the registry; stat is os.Stat and readDir os.ReadDir
// on the server (tests give others). nil allows it.
func CheckBind(src string, r Registry, stat func(string) (fs.FileInfo, error), readDir func(string) ([]fs.DirEntry, error)) error {
	src = filepath.Clean(src)
	if sh, ok := r.Find(src); ok {
		if sh.State != StateReady {
			return fmt.Errorf("%s is in the shared folder %s, whose first synchronization is not complete yet: wait until `docker dockbridge share ls` says it is ready, then run this again", src, sh.Path)
		}
		return nil
	}
	var inside []string
	for _, sh := range r.Shares {
		if strings.HasPrefix(sh.Path, src+"/") || src == "/" {
			inside = append(inside, sh.Path)
		}
	}
	if len(inside) > 0 {
		return fmt.Errorf("%s is not shared with the server, only %s inside it is: bind that folder, or share %s itself (docker dockbridge share add %s)", src, strings.Join(inside, ", "), src, src)
	}
	notShared := func(what string) error {
		return fmt.Errorf("%s is not shared with the server (%s): run `docker dockbridge share add %s` (or share a folder that holds it), wait for it to be ready, and run this again. Docker would have mounted an empty directory", src, what, src)
	}
	fi, err := stat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return notShared("the server has nothing at that path")
	}
	if err != nil {
		return fmt.Errorf("bind source %s: %w", src, err)
	}
	if fi.IsDir() {
		ents, err := readDir(src)
		if err != nil {
			return fmt.Errorf("bind source %s: %w", src, err)
		}
		if len(ents) == 0 {
			return notShared(fmt.Sprintf("the server has only an empty directory there; to bind that one on purpose, label the container %s=server", ServerBindLabel))
		}
	}
	return nil
}

// createURI matches a container create, with or without an API version.
var createURI = regexp.MustCompile(`^(/v[0-9.]+)?/containers/create(\?|$)`)

// AuthzPlugin is the authorization plugin's HTTP handler (Docker's AuthZ plugin protocol):
// container creates are checked, everything else is allowed. Its own failure to read the
// registry refuses a create with a bind (it cannot tell), never anything else.
type AuthzPlugin struct {
	Shares *Shares
	// Stat and ReadDir default to the os ones.
	Stat    func(string) (fs.FileInfo, error)
	ReadDir func(string) ([]fs.DirEntry, error)
}

type authzRequest struct {
	RequestMethod string `json:"RequestMethod"`
	RequestURI    string `json:"RequestURI"`
	RequestBody   []byte `json:"RequestBody"`
}

type authzResponse struct {
	Allow bool   `json:"Allow"`
	Msg   string `json:"Msg,omitempty"`
	Err   string `json:"Err,omitempty"`
}

func (a *AuthzPlugin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1+json")
	switch r.URL.Path {
	case "/Plugin.Activate":
		_ = json.NewEncoder(w).Encode(map[string][]string{"Implements": {"authz"}})
	case "/AuthZPlugin.AuthZRes":
		_ = json.NewEncoder(w).Encode(authzResponse{Allow: true})
	case "/AuthZPlugin.AuthZReq":
		var req authzRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			_ = json.NewEncoder(w).Encode(authzResponse{Allow: true})
			return
		}
		_ = json.NewEncoder(w).Encode(a.decide(req))
	default:
		http.NotFound(w, r)
	}
}

// ProbeQuery marks the request Install makes to see that Docker asks the bind check: the check
// refuses it with ProbeAnswer (a refused GET /version changes nothing).
const (
	ProbeQuery  = "dockbridge-bind-check-probe=1"
	ProbeAnswer = "the dockbridge bind check is on"
)

func (a *AuthzPlugin) decide(req authzRequest) authzResponse {
	if req.RequestMethod == http.MethodGet && strings.Contains(req.RequestURI, ProbeQuery) {
		return authzResponse{Msg: ProbeAnswer}
	}
	if req.RequestMethod != http.MethodPost || !createURI.MatchString(req.RequestURI) || len(req.RequestBody) == 0 {
		return authzResponse{Allow: true}
	}
	sources, serverBinds, err := BindSources(req.RequestBody)
	if err != nil || len(sources) == 0 || serverBinds {
		return authzResponse{Allow: true} // dockerd itself refuses a body it cannot read
	}
	reg, err := a.Shares.Load()
	if err != nil {
		return authzResponse{Msg: fmt.Sprintf("dockbridge cannot read its shared folders (%v): no container with a bind mount is created until it can", err)}
	}
	stat, readDir := a.Stat, a.ReadDir
	if stat == nil {
		stat = os.Stat
	}
	if readDir == nil {
		readDir = os.ReadDir
	}
	var msgs []string
	for _, src := range sources {
		if err := CheckBind(src, reg, stat, readDir); err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) > 0 {
		return authzResponse{Msg: strings.Join(msgs, "; ")}
	}
	return authzResponse{Allow: true}
}
