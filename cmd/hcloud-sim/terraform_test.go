package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"golang.org/x/crypto/ssh"
)

// terraformTools finds Terraform and Hetzner's Terraform provider, which scripts/setup.sh
// --tests builds from the Go module proxy into $(go env GOPATH)/bin (no registry is
// reachable here); a terraform on PATH is used when that one is missing.
func terraformTools(t *testing.T) (terraform, providerDir string) {
	gobin := filepath.Join(build.Default.GOPATH, "bin")
	terraform = filepath.Join(gobin, "terraform")
	if _, err := os.Stat(terraform); err != nil {
		terraform, _ = exec.LookPath("terraform")
	}
	provider := filepath.Join(gobin, "terraform-provider-hcloud")
	_, perr := os.Stat(provider)
	if terraform == "" || perr != nil {
		if testing.Short() {
			t.Skip("terraform or terraform-provider-hcloud not installed")
		}
		t.Fatalf("terraform (%q) or %s is missing: run bash scripts/setup.sh --tests (it builds both from the Go module proxy)", terraform, provider)
	}
	return terraform, gobin
}

// TestTerraformProvider drives Hetzner's Terraform provider, a demanding client that
// reads back every attribute after each apply, against the simulator: a realistic
// configuration (an SSH key read from a file with its comment and trailing newline, a
// firewall with rule descriptions, a volume, a server with user_data and labels, an
// attachment), applied, planned again with no drift, destroyed, nothing left behind.
func TestTerraformProvider(t *testing.T) {
	terraform, providerDir := terraformTools(t)
	token := strings.Repeat("t", 64) // the provider insists on Hetzner's 64-character tokens
	addr, simOut, _ := startRun(t, "--token", token)

	dir := t.TempDir()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " alice@laptop\n"
	userData := "#cloud-config\nruncmd:\n  - echo hello   \n"
	files := map[string]string{
		"id_ed25519.pub":  pubFile,
		"cloud-init.yaml": userData,
		"main.tf":         strings.ReplaceAll(terraformConfig, "ENDPOINT", "http://"+addr+"/v1"),
		"cli.tfrc": `provider_installation {
  dev_overrides {
    "hetznercloud/hcloud" = "` + providerDir + `"
  }
}
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tf := func(args ...string) (string, error) {
		cmd := exec.CommandContext(t.Context(), terraform, append(args, "-no-color", "-input=false")...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+filepath.Join(dir, "cli.tfrc"), "CHECKPOINT_DISABLE=1",
			"TF_IN_AUTOMATION=1", "TF_DATA_DIR="+filepath.Join(dir, ".terraform"), "TF_VAR_hcloud_token="+token)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}

	out, err := tf("apply", "-auto-approve")
	if err != nil {
		t.Fatalf("terraform apply: %v\n%s\nsimulator log:\n%s", err, out, simOut.String())
	}
	if !strings.Contains(out, "Resources: 5 added") {
		t.Errorf("terraform apply did not add the 5 resources:\n%s", out)
	}
	out, err = tf("plan", "-detailed-exitcode")
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 2 {
		t.Fatalf("terraform plan after apply sees drift (the simulator answered something other than what was sent):\n%s", out)
	}
	if err != nil {
		t.Fatalf("terraform plan: %v\n%s", err, out)
	}

	// What Terraform saw is what the API stores.
	c := hcloud.NewClient(hcloud.WithToken(token), hcloud.WithEndpoint("http://"+addr+"/v1"))
	keys, err := c.SSHKey.All(t.Context())
	if err != nil || len(keys) != 1 || keys[0].PublicKey != pubFile {
		t.Errorf("ssh keys = %+v, %v; want one with public_key %q", keys, err, pubFile)
	}
	servers, err := c.Server.All(t.Context())
	if err != nil || len(servers) != 1 || servers[0].ServerType.Name != "cx23" || len(servers[0].Volumes) != 1 || servers[0].Labels["example.com/team"] != "web" {
		t.Errorf("servers = %+v, %v", servers, err)
	}

	out, err = tf("destroy", "-auto-approve")
	if err != nil {
		t.Fatalf("terraform destroy: %v\n%s", err, out)
	}
	servers, _ = c.Server.All(t.Context())
	vols, _ := c.Volume.All(t.Context())
	fws, _ := c.Firewall.All(t.Context())
	keys, _ = c.SSHKey.All(t.Context())
	if len(servers)+len(vols)+len(fws)+len(keys) != 0 {
		t.Errorf("after destroy: %d servers, %d volumes, %d firewalls, %d ssh keys", len(servers), len(vols), len(fws), len(keys))
	}
}

const terraformConfig = `
terraform {
  required_providers {
    hcloud = { source = "hetznercloud/hcloud" }
  }
}

variable "hcloud_token" {
  type      = string
  sensitive = true
}

provider "hcloud" {
  token         = var.hcloud_token
  endpoint      = "ENDPOINT"
  poll_interval = "100ms"
}

locals {
  labels = { "managed-by" = "terraform", "example.com/team" = "web" }
}

data "hcloud_server_type" "web" {
  name = "cx23"
}

check "server_type_location" {
  assert {
    condition     = anytrue([for l in data.hcloud_server_type.web.locations : l.name == "fsn1" && !l.is_deprecated])
    error_message = "cx23 is not offered in fsn1, or deprecated there"
  }
}

resource "hcloud_ssh_key" "me" {
  name       = "alice@laptop"
  public_key = file("${path.module}/id_ed25519.pub")
  labels     = local.labels
}

resource "hcloud_firewall" "web" {
  name   = "web firewall"
  labels = local.labels
  rule {
    direction   = "in"
    protocol    = "tcp"
    port        = "22"
    source_ips  = ["0.0.0.0/0", "::/0"]
    description = "SSH from anywhere"
  }
  rule {
    direction   = "in"
    protocol    = "icmp"
    source_ips  = ["203.0.113.0/24"]
    description = "ping from the office"
  }
}

resource "hcloud_volume" "data" {
  name     = "data"
  size     = 10
  location = "fsn1"
  format   = "ext4"
  labels   = local.labels
}

resource "hcloud_server" "web" {
  name                     = "web"
  server_type              = data.hcloud_server_type.web.name
  image                    = "docker-ce"
  location                 = "fsn1"
  ssh_keys                 = [hcloud_ssh_key.me.id]
  firewall_ids             = [hcloud_firewall.web.id]
  user_data                = file("${path.module}/cloud-init.yaml")
  labels                   = local.labels
  shutdown_before_deletion = true
  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }
}

resource "hcloud_volume_attachment" "data" {
  volume_id = hcloud_volume.data.id
  server_id = hcloud_server.web.id
  automount = false
}
`
