package fswatch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWatch(t *testing.T) {
	for _, poll := range []bool{false, true} {
		name := "native"
		if poll {
			name = "walking"
		}
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			changed := make(chan struct{}, 100)
			done := make(chan error, 1)
			go func() {
				done <- Watch(ctx, root, Options{Poll: poll, MinInterval: 100 * time.Millisecond}, func() { changed <- struct{}{} })
			}()
			time.Sleep(300 * time.Millisecond) // the first walk
			expect := func(what string, f func()) {
				t.Helper()
				for len(changed) > 0 {
					<-changed
				}
				f()
				select {
				case <-changed:
				case <-time.After(5 * time.Second):
					t.Fatalf("no change reported after %s", what)
				}
			}
			sub := filepath.Join(root, "a", "b")
			expect("a new folder", func() { os.MkdirAll(sub, 0o755) })
			time.Sleep(50 * time.Millisecond)
			expect("a file in the new folder", func() { os.WriteFile(filepath.Join(sub, "f"), []byte("1"), 0o644) })
			expect("an edit in place", func() { os.WriteFile(filepath.Join(sub, "f"), []byte("22"), 0o644) })
			expect("a delete", func() { os.Remove(filepath.Join(sub, "f")) })
			// Nothing happens: nothing is reported.
			time.Sleep(500 * time.Millisecond)
			for len(changed) > 0 {
				<-changed
			}
			time.Sleep(500 * time.Millisecond)
			if n := len(changed); n != 0 {
				t.Fatalf("%d changes reported while nothing changed", n)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}
