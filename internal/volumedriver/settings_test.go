package volumedriver

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/go-plugins-helpers/volume"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

// The token comes from HCLOUD_TOKEN_FILE (what `up` sets: a file in the secrets mount, so that
// `docker plugin inspect` shows a path, not the token) or HCLOUD_TOKEN. A token file that is
// not there yet is no reason to fail at start: Docker disables a plugin that exits at start.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hcloud-token")
	if err := os.WriteFile(file, []byte("  s3cr3t-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := SettingsFromEnv(env(map[string]string{"HCLOUD_TOKEN_FILE": file}))
	if err != nil || s.Token != "s3cr3t-token" || s.TokenErr != nil || s.TokenFile != file {
		t.Fatalf("token file: %+v %v", s, err)
	}

	missing := filepath.Join(dir, "not-written-yet")
	s, err = SettingsFromEnv(env(map[string]string{"HCLOUD_TOKEN_FILE": missing}))
	if err != nil {
		t.Fatalf("a missing token file stops the plugin: %v", err)
	}
	if s.Token != "" || !errors.Is(s.TokenErr, fs.ErrNotExist) || !strings.Contains(s.TokenErr.Error(), missing) {
		t.Fatalf("missing token file: token %q, err %v", s.Token, s.TokenErr)
	}
	// Every request that needs the API says what is missing and how to fix it.
	h := newHarness(t)
	h.setting.TokenFile = missing
	h.d = h.newDriver()
	h.d.cloud, h.d.noCloud = nil, s.TokenErr
	err = h.d.Create(&volume.CreateRequest{Name: "x"})
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "docker dockbridge up") ||
		!strings.Contains(err.Error(), "docker plugin disable hetzner && docker plugin enable --timeout 120 hetzner") {
		t.Fatalf("create without the token file: %v", err)
	}

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err = SettingsFromEnv(env(map[string]string{"HCLOUD_TOKEN_FILE": empty})); err != nil || s.TokenErr == nil || !strings.Contains(s.TokenErr.Error(), "is empty") {
		t.Fatalf("empty token file: %+v %v", s, err)
	}

	_, err = SettingsFromEnv(env(map[string]string{"HCLOUD_TOKEN_FILE": file, "HCLOUD_TOKEN": "other-token"}))
	if err == nil || !strings.Contains(err.Error(), "set only one") {
		t.Fatalf("both set: %v", err)
	}
	if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "other-token") {
		t.Fatalf("a token is in the error: %v", err)
	}
}
