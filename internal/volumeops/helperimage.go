package volumeops

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/dockbridge/dockbridge/internal/serverbin"
)

const (
	helperRepo  = "dockbridge-helper"
	helperLabel = "dockbridge.helper"
	helperPath  = "/dockbridge-helper"
)

// helperSource is the static Linux binary a helper image is made of.
type helperSource struct {
	name string // for messages: a path, or "the linux/arm64 helper this docker-dockbridge carries"
	data []byte
}

// loadServerBinary is serverbin.Load (tests replace it).
var loadServerBinary = serverbin.Load

// helperSourceFor picks the helper binary for an engine on engineArch (as `docker info` names
// it): HelperBinary or $DOCKBRIDGE_HELPER_BINARY when set; else the server binary this CLI
// carries for that architecture (make build, releases: what every user has, on any OS); else,
// in a developer's plain `go build`, this executable when it is a static Linux binary for the
// engine.
func (e *Engine) helperSourceFor(engineArch string) (helperSource, error) {
	goarch, archErr := serverbin.GoArch(engineArch)
	explicit := e.HelperBinary
	if explicit == "" {
		explicit = os.Getenv("DOCKBRIDGE_HELPER_BINARY")
	}
	if explicit != "" {
		data, err := os.ReadFile(explicit)
		if err != nil {
			return helperSource{}, fmt.Errorf("read the helper binary: %w", err)
		}
		if err := serverbin.CheckELF(data, goarch); err != nil {
			return helperSource{}, fmt.Errorf("helper binary %s (DOCKBRIDGE_HELPER_BINARY) does not fit an engine on %s: %w", explicit, engineArch, err)
		}
		return helperSource{name: explicit, data: data}, nil
	}
	if archErr != nil {
		return helperSource{}, fmt.Errorf("the engine runs on %s: %w", engineArch, archErr)
	}
	b, err := loadServerBinary(goarch)
	if err == nil {
		return helperSource{name: "the linux/" + goarch + " helper this docker-dockbridge carries", data: b.Data}, nil
	}
	if !errors.Is(err, serverbin.ErrNotEmbedded) {
		return helperSource{}, err
	}
	if self, serr := os.Executable(); serr == nil {
		if data, rerr := os.ReadFile(self); rerr == nil && serverbin.CheckELF(data, goarch) == nil {
			return helperSource{name: self, data: data}, nil
		}
	}
	return helperSource{}, fmt.Errorf("%w: it has no helper for this engine (linux/%s). Install a release or build with `make build`; or set DOCKBRIDGE_HELPER_BINARY to a static linux/%s build of hetzner-volume-plugin (`make server-bins` writes build/serverbin/hetzner-volume-plugin-linux-%s)", err, goarch, goarch, goarch)
}

// HelperImage returns the helper image's reference, importing it if the engine lacks it. The
// image holds only the helper binary; its tag is the binary's hash, so an engine imports each
// version once.
func (e *Engine) HelperImage(ctx context.Context) (string, error) {
	if e.helperRef != "" {
		return e.helperRef, nil
	}
	ref, err := e.helperImage(ctx)
	if err == nil {
		e.helperRef = ref
	}
	return ref, err
}

func (e *Engine) helperImage(ctx context.Context) (string, error) {
	info, err := e.API.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", fmt.Errorf("engine info: %w", err)
	}
	if info.Info.OSType != "" && info.Info.OSType != "linux" {
		return "", fmt.Errorf("the engine runs %s containers; volume files need a Linux engine", info.Info.OSType)
	}
	src, err := e.helperSourceFor(info.Info.Architecture)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(src.data)
	ref := helperRepo + ":" + hex.EncodeToString(sum[:])[:16]
	if _, err := e.API.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect helper image %s: %w", ref, err)
	}
	e.progressf("Importing helper image %s (%d MB before compression, once per engine and version)", ref, len(src.data)>>20)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(helperTar(pw, src.data)) }()
	rc, err := e.API.ImageImport(ctx, client.ImageImportSource{Source: pr, SourceName: "-"}, ref,
		client.ImageImportOptions{Message: "dockbridge volume helper", Changes: []string{
			"LABEL " + helperLabel + "=image", "ENTRYPOINT [\"" + helperPath + "\"]", "ENV DOCKBRIDGE_HELPER=1"}})
	if err != nil {
		pr.Close()
		return "", fmt.Errorf("import helper image from %s: %w", src.name, err)
	}
	defer rc.Close()
	if err := readJSONMessages(rc); err != nil {
		return "", fmt.Errorf("import helper image from %s: %w", src.name, err)
	}
	e.removeOldHelpers(ctx, ref)
	return ref, nil
}

// removeOldHelpers removes the helper images of other versions (ours by label and name): each
// version imports its own, and they would pile up, 25-35 MB apiece. One that a running helper
// still uses stays (the engine refuses), as does anything not made by us; a version that is
// still in use elsewhere imports its image again when it next needs it.
func (e *Engine) removeOldHelpers(ctx context.Context, keep string) {
	imgs, err := e.API.ImageList(ctx, client.ImageListOptions{
		Filters: make(client.Filters).Add("label", helperLabel+"=image").Add("reference", helperRepo+":*")})
	if err != nil {
		return
	}
	for _, img := range imgs.Items {
		for _, tag := range img.RepoTags {
			if tag == keep || !strings.HasPrefix(tag, helperRepo+":") {
				continue
			}
			_, _ = e.API.ImageRemove(ctx, tag, client.ImageRemoveOptions{})
		}
	}
}

// helperTar writes the helper image's file system as a gzip-compressed tar (the engine
// unpacks it; a remote engine gets a third of the bytes over SSH). The compressor writes a
// few hundred bytes at a time: buffered, the request body moves in 256 KiB pieces (unbuffered,
// one SSH packet per piece made a 13 MB upload take 8 s instead of 1).
func helperTar(w io.Writer, bin []byte) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	for _, d := range []string{"data/", "tmp/", "proc/", "dev/", "etc/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: helperPath[1:], Mode: 0o755, Size: int64(len(bin))}); err != nil {
		return err
	}
	if _, err := tw.Write(bin); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// readJSONMessages drains an engine progress stream and returns its error, if any.
func readJSONMessages(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			if m.ErrorDetail.Message != "" {
				return errors.New(m.ErrorDetail.Message)
			}
			if m.Error != "" {
				return errors.New(m.Error)
			}
		}
	}
	return sc.Err()
}
