package volumeops_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// importImage makes a one-file image tagged ref, with the helper's label when labelled.
func importImage(t *testing.T, c *client.Client, ref string, labelled bool) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Mode: 0o644, Size: int64(len(ref))})
	_, _ = tw.Write([]byte(ref))
	_ = tw.Close()
	var changes []string
	if labelled {
		changes = []string{"LABEL dockbridge.helper=image"}
	}
	rc, err := c.ImageImport(context.Background(), client.ImageImportSource{Source: &buf, SourceName: "-"}, ref,
		client.ImageImportOptions{Changes: changes})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, rc)
	rc.Close()
	t.Cleanup(func() { _, _ = c.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{Force: true}) })
}

func imageExists(c *client.Client, ref string) bool {
	_, err := c.ImageInspect(context.Background(), ref)
	return err == nil
}

// TestHelperImportRemovesOtherVersions: importing the helper image removes the helper images of
// other versions, but not one a container uses, nor an image that only has the name.
func TestHelperImportRemovesOtherVersions(t *testing.T) {
	e, c := newEngine(t)
	ctx := context.Background()
	const old, used, foreign = "dockbridge-helper:0000000000000001", "dockbridge-helper:0000000000000002", "dockbridge-helper:notours"
	importImage(t, c, old, true)
	importImage(t, c, used, true)
	importImage(t, c, foreign, false)
	ctr, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{Image: used,
		Config: &container.Config{Cmd: []string{"/f"}}, Name: "dockbridge-test-uses-old-helper"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c.ContainerRemove(ctx, ctr.ID, client.ContainerRemoveOptions{Force: true}) })

	current, err := e.HelperImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.RemoveOldHelpers(ctx, current) // what an import does after it
	for ref, want := range map[string]bool{current: true, old: false, used: true, foreign: true} {
		if got := imageExists(c, ref); got != want {
			t.Errorf("%s exists: %v, want %v", ref, got, want)
		}
	}
}

// TestHelperImageRemovedUnderneath: a helper image that another version removed after this
// engine looked it up is imported again, and the helper runs.
func TestHelperImageRemovedUnderneath(t *testing.T) {
	e, c := newEngine(t)
	ctx := context.Background()
	vol := "dockbridge-test-gone-helper"
	if _, err := c.VolumeCreate(ctx, client.VolumeCreateOptions{Name: vol}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c.VolumeRemove(ctx, vol, client.VolumeRemoveOptions{Force: true}) })
	ref, err := e.HelperImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Another package's tests may run a helper from the same image for a moment.
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		_, err := c.ImageRemove(ctx, ref, client.ImageRemoveOptions{})
		if err == nil {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("remove %s: %v", ref, err)
		}
	}
	if _, err := e.Probe(ctx, vol, false); err != nil {
		t.Fatalf("probe after the helper image was removed: %v", err)
	}
	if !imageExists(c, ref) {
		t.Fatalf("%s was not imported again", ref)
	}
}
