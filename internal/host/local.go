package host

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dockbridge/dockbridge/internal/link"
	"github.com/dockbridge/dockbridge/internal/serverbin"
)

// The server end of the laptop agent (internal/linkserver): the servers' binary at
// link.ServerBinary on the root disk (never run from the data volume, which the clean stop
// unmounts), and `dockbridge-server local install`: the bind check (a Docker authorization plugin
// refusing a bind mount of a laptop folder that is not shared), the drop-in that shows the shared
// folders before dockerd starts, and their mounts.

// haveLinkServerBinary says whether this CLI can give a server its binary at all, before asking
// the server anything.
func haveLinkServerBinary(pluginDir string) bool {
	if os.Getenv("DOCKBRIDGE_SERVER_BINARY") != "" {
		return true
	}
	for _, a := range serverbin.Arches {
		if _, err := serverbin.Load(a); err == nil {
			return true
		}
	}
	if pluginDir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(pluginDir, "rootfs", "hetzner-volume-plugin"))
	return err == nil
}

// installLinkServer puts the servers' binary at link.ServerBinary (on the root disk: the backup
// schedules' copy, schedule.DefaultBinary, is on the data volume, which the clean stop unmounts
// under the processes running from it) unless the same one is there, then runs its `local
// install`. It returns what it did.
func installLinkServer(ctx context.Context, r Remote, pluginDir string) (string, error) {
	if !haveLinkServerBinary(pluginDir) {
		return "skipped: this docker-dockbridge carries no server binary (make build, or --plugin-dir): no port forwards, shared folders or bind check", nil
	}
	out, err := r.Run(ctx, fmt.Sprintf(`echo "arch=$(uname -m)"; echo "have=$(sha256sum %s 2>/dev/null | cut -c1-64)"`, link.ServerBinary), nil)
	if err != nil {
		return "", fmt.Errorf("look at the server's binary: %w", err)
	}
	facts := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			facts[k] = strings.TrimSpace(v)
		}
	}
	bin, from, err := ServerBinarySource(facts["arch"], pluginDir)
	if err != nil {
		return "", err
	}
	var notes []string
	sum := sha256.Sum256(bin)
	want := hex.EncodeToString(sum[:])
	if facts["have"] != want {
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
		_, _ = zw.Write(bin)
		_ = zw.Close()
		script := fmt.Sprintf(`set -e; d=$(dirname %[1]s); mkdir -p "$d"; t=$(mktemp "$d/.upload.XXXXXX"); trap 'rm -f "$t"' EXIT
gzip -dc > "$t"; echo "%[2]s  $t" | sha256sum -c --quiet -; chmod 0755 "$t"; mv -f "$t" %[1]s`, link.ServerBinary, want)
		size := z.Len()
		if _, err := r.Run(ctx, script, &z); err != nil {
			return "", fmt.Errorf("upload the servers' binary (%s): %w", from, err)
		}
		notes = append(notes, fmt.Sprintf("uploaded %s (%d KB)", from, size>>10))
	}
	out, err = r.Run(ctx, link.ServerBinary+" local install", nil)
	if err != nil {
		return "", fmt.Errorf("set up the bind check and shared folders on the server: %w", err)
	}
	return strings.Join(append(notes, strings.TrimSpace(string(out))), "; "), nil
}
