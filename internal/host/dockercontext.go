package host

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/context/docker"
	"github.com/docker/cli/cli/context/store"
)

// ContextStore is the part of docker/cli's context store dockbridge uses
// (dockerCli.ContextStore() satisfies it).
type ContextStore interface {
	GetMetadata(name string) (store.Metadata, error)
	CreateOrUpdate(meta store.Metadata) error
	Remove(name string) error
}

var _ ContextStore = (*store.ContextStore)(nil)

// ContextHost is the docker endpoint of an environment: the ssh alias our ssh_config defines.
func ContextHost(env string) string { return "ssh://" + SSHAlias(env) }

// EnsureContext creates or updates the docker context of env; it reports whether it changed.
func EnsureContext(s ContextStore, env string) (bool, error) {
	name := ContextName(env)
	want := ContextHost(env)
	desc := fmt.Sprintf("dockbridge environment %q (Hetzner Cloud, over SSH)", env)
	if meta, err := s.GetMetadata(name); err == nil {
		ep, err := docker.EndpointFromContext(meta)
		if err == nil && ep.Host == want && !ep.SkipTLSVerify {
			if dc, ok := meta.Metadata.(command.DockerContext); ok && dc.Description == desc {
				return false, nil
			}
		}
		if err == nil && ep.Host != want {
			if dc, ok := meta.Metadata.(command.DockerContext); !ok || dc.AdditionalFields["dockbridge.env"] != env {
				return false, fmt.Errorf("docker context %q exists and points at %s, not at dockbridge: remove it (docker context rm %s) or use another --name", name, ep.Host, name)
			}
		}
	} else if !errdefs.IsNotFound(err) {
		return false, fmt.Errorf("read docker context %q: %w", name, err)
	}
	meta := store.Metadata{
		Name: name,
		Metadata: command.DockerContext{
			Description:      desc,
			AdditionalFields: map[string]any{"dockbridge.env": env},
		},
		Endpoints: map[string]any{docker.DockerEndpoint: docker.EndpointMeta{Host: want}},
	}
	if err := s.CreateOrUpdate(meta); err != nil {
		return false, fmt.Errorf("write docker context %q: %w", name, err)
	}
	return true, nil
}

// RemoveContext removes the context of env if it is ours.
func RemoveContext(s ContextStore, env string) (bool, error) {
	name := ContextName(env)
	meta, err := s.GetMetadata(name)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read docker context %q: %w", name, err)
	}
	if ep, err := docker.EndpointFromContext(meta); err != nil || ep.Host != ContextHost(env) {
		return false, nil // not ours: leave it
	}
	if err := s.Remove(name); err != nil {
		return false, fmt.Errorf("remove docker context %q: %w", name, err)
	}
	return true, nil
}
