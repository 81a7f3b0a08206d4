package volumeops

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

const (
	helperRepo  = "dockbridge-helper"
	helperLabel = "dockbridge.helper"
	helperPath  = "/dockbridge-helper"
)

var elfMachine = map[string]elf.Machine{
	"x86_64": elf.EM_X86_64, "amd64": elf.EM_X86_64,
	"aarch64": elf.EM_AARCH64, "arm64": elf.EM_AARCH64,
}

// checkHelperBinary makes sure bin is a static Linux ELF for the engine's architecture.
func checkHelperBinary(bin, engineArch string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("helper binary %s is not a Linux executable (%v): on macOS or Windows set DOCKBRIDGE_HELPER_BINARY to a linux/%s build of docker-dockbridge", bin, err, engineArch)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("helper binary %s is dynamically linked: build it static (`make build` does)", bin)
		}
	}
	if want, ok := elfMachine[engineArch]; ok && f.Machine != want {
		return fmt.Errorf("helper binary %s is for %s but the engine runs on %s: set DOCKBRIDGE_HELPER_BINARY to a linux/%s build of docker-dockbridge", bin, f.Machine, engineArch, engineArch)
	}
	return nil
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
	bin, err := helperBinary(e)
	if err != nil {
		return "", err
	}
	info, err := e.API.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", fmt.Errorf("engine info: %w", err)
	}
	if info.Info.OSType != "" && info.Info.OSType != "linux" {
		return "", fmt.Errorf("the engine runs %s containers; volume files need a Linux engine", info.Info.OSType)
	}
	if err := checkHelperBinary(bin, info.Info.Architecture); err != nil {
		return "", err
	}
	sum, size, err := hashFile(bin)
	if err != nil {
		return "", err
	}
	ref := helperRepo + ":" + sum[:16]
	if _, err := e.API.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect helper image %s: %w", ref, err)
	}
	e.progressf("Importing helper image %s (%d MB, once per engine and version)", ref, size>>20)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(helperTar(pw, bin, size)) }()
	rc, err := e.API.ImageImport(ctx, client.ImageImportSource{Source: pr, SourceName: "-"}, ref,
		client.ImageImportOptions{Message: "dockbridge volume helper", Changes: []string{
			"LABEL " + helperLabel + "=image", "ENTRYPOINT [\"" + helperPath + "\"]", "ENV DOCKBRIDGE_HELPER=1"}})
	if err != nil {
		pr.Close()
		return "", fmt.Errorf("import helper image: %w", err)
	}
	defer rc.Close()
	if err := readJSONMessages(rc); err != nil {
		return "", fmt.Errorf("import helper image: %w", err)
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

func helperTar(w io.Writer, bin string, size int64) error {
	f, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(w)
	for _, d := range []string{"data/", "tmp/", "proc/", "dev/", "etc/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: helperPath[1:], Mode: 0o755, Size: size}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return err
	}
	return tw.Close()
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, fmt.Errorf("read helper binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read helper binary: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
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
