package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"strings"
)

// ChecksumLine is the sidecar content, as `sha256sum NAME` prints it.
func ChecksumLine(sum []byte, name string) []byte {
	return fmt.Appendf(nil, "%s  %s\n", hex.EncodeToString(sum), name)
}

// ParseChecksum reads a sha256sum-format file and returns the digest recorded for name (a file
// with a single line is accepted whatever name it records).
func ParseChecksum(b []byte, name string) ([]byte, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	var found []byte
	lines := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		lines++
		hexsum, file, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("checksum line %q is not in sha256sum format", line)
		}
		file = strings.TrimPrefix(strings.TrimLeft(file, " "), "*")
		sum, err := hex.DecodeString(hexsum)
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("checksum line %q does not start with a SHA-256 in hex", line)
		}
		if file == name || strings.HasSuffix(file, "/"+name) || found == nil {
			found = sum
		}
	}
	if found == nil {
		return nil, fmt.Errorf("checksum file holds no SHA-256")
	}
	return found, nil
}

// hashingWriter hashes and counts what passes through.
type hashingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newHashingWriter(w io.Writer) *hashingWriter {
	return &hashingWriter{w: w, h: sha256.New()}
}

func (h *hashingWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
