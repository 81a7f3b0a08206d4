// Package simimage holds the recipe of the simulated-server images (build.sh and the files it
// copies into the root filesystem) and computes the recipe hash that tags the built images.
//
// The hash must equal what `build.sh --print-hash` prints; TestRecipeHashMatchesScript in
// internal/simhost checks that.
package simimage

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Recipe is every file of the recipe: build.sh and the rootfs/ overlay (not simimage.mk,
// which only calls build.sh).
//
//go:embed build.sh binfmt.sh rootfs arm64
var Recipe embed.FS

// Hash is the recipe hash: the first 12 hex digits of sha256 over `sha256sum` lines of the
// recipe files in byte order of their paths, the same value build.sh computes.
func Hash() (string, error) {
	var paths []string
	err := fs.WalkDir(Recipe, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("list simimage recipe: %w", err)
	}
	sort.Strings(paths)
	var sums strings.Builder
	for _, p := range paths {
		b, err := Recipe.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("read simimage recipe file %s: %w", p, err)
		}
		fmt.Fprintf(&sums, "%x  %s\n", sha256.Sum256(b), p)
	}
	sum := sha256.Sum256([]byte(sums.String()))
	return hex.EncodeToString(sum[:])[:12], nil
}

// WriteTo writes the recipe into dir (build.sh executable), so it can be run outside the
// source tree.
func WriteTo(dir string) error {
	return fs.WalkDir(Recipe, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := Recipe.ReadFile(p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(dst, b, mode); err != nil {
			return fmt.Errorf("write simimage recipe: %w", err)
		}
		return nil
	})
}
