package hcloudsim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/dockbridge/dockbridge/internal/hcloudsim/hcloudsimtest"
)

// wantAPIError fails unless err is an hcloud API error with code.
func wantAPIError(t *testing.T, err error, code hcloud.ErrorCode) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	if !hcloud.IsError(err, code) {
		t.Fatalf("got error %v, want code %s", err, code)
	}
}

func mustServer(t *testing.T, c *hcloud.Client, name, location string, labels map[string]string) *hcloud.Server {
	t.Helper()
	res, _, err := c.Server.Create(t.Context(), hcloud.ServerCreateOpts{
		Name: name, ServerType: &hcloud.ServerType{Name: "cx23"}, Image: &hcloud.Image{Name: "debian-12"},
		Location: &hcloud.Location{Name: location}, Labels: labels,
	})
	if err != nil {
		t.Fatalf("create server %s: %v", name, err)
	}
	if err := c.Action.WaitFor(t.Context(), append([]*hcloud.Action{res.Action}, res.NextActions...)...); err != nil {
		t.Fatalf("wait for server %s: %v", name, err)
	}
	s, _, err := c.Server.GetByID(t.Context(), res.Server.ID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustVolume(t *testing.T, c *hcloud.Client, opts hcloud.VolumeCreateOpts) *hcloud.Volume {
	t.Helper()
	if opts.Location == nil && opts.Server == nil {
		opts.Location = &hcloud.Location{Name: "fsn1"}
	}
	if opts.Size == 0 {
		opts.Size = 10
	}
	res, _, err := c.Volume.Create(t.Context(), opts)
	if err != nil {
		t.Fatalf("create volume %s: %v", opts.Name, err)
	}
	if err := c.Action.WaitFor(t.Context(), append([]*hcloud.Action{res.Action}, res.NextActions...)...); err != nil {
		t.Fatalf("wait for volume %s: %v", opts.Name, err)
	}
	v, _, err := c.Volume.GetByID(t.Context(), res.Volume.ID)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func waitAction(t *testing.T, c *hcloud.Client, a *hcloud.Action, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("start action: %v", err)
	}
	if err := c.Action.WaitFor(t.Context(), a); err != nil {
		t.Fatalf("wait for action %s: %v", a.Command, err)
	}
}

type rawResponse struct {
	status int
	header http.Header
	body   []byte
	err    struct {
		Error struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Details json.RawMessage `json:"details"`
		} `json:"error"`
	}
}

// raw sends a request with the simulator's token (token "" sends none).
func raw(t testing.TB, sim *hcloudsimtest.Sim, method, path, token string, body []byte) rawResponse {
	t.Helper()
	req, err := http.NewRequest(method, sim.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := rawResponse{status: resp.StatusCode, header: resp.Header, body: b}
	if len(b) > 0 && resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(b, &r.err); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v: %s", method, path, err, b)
		}
	}
	return r
}
