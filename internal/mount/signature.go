package mount

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dockbridge/dockbridge/internal/mount/internal/cmdrun"
)

// Signature is what low-level probing found on a device: a filesystem, a partition table,
// LUKS, swap, or any other signature blkid or wipefs knows.
type Signature struct {
	Device string

	Type    string // TYPE from blkid -p: ext4, xfs, btrfs, swap, crypto_LUKS, ...; "" if none
	UUID    string
	Label   string
	Usage   string // filesystem, crypto, raid, other
	Version string

	PTType string // partition table type: dos, gpt, ...
	PTUUID string

	// Ambivalent is set when blkid found several conflicting signatures (exit code 8).
	Ambivalent bool

	// Found lists every signature wipefs reports, with its offset (a gpt table appears twice,
	// with its protective MBR).
	Found []Found
}

// Found is one signature as listed by wipefs.
type Found struct {
	Type   string `json:"type"`
	Offset string `json:"offset"`
	UUID   string `json:"uuid"`
	Label  string `json:"label"`
	Usage  string `json:"usage"`
}

// Blank reports whether the device holds no signature of any kind.
func (s Signature) Blank() bool {
	return s.Type == "" && s.PTType == "" && !s.Ambivalent && len(s.Found) == 0
}

// String describes the signature for people: "ext4 filesystem (UUID=..., LABEL=...)".
func (s Signature) String() string {
	if s.Blank() {
		return "no signature (blank)"
	}
	var parts []string
	if s.Type != "" {
		kind := s.Type
		switch {
		case s.Type == "crypto_LUKS":
			kind = "LUKS encrypted container"
		case s.Type == "swap":
			kind = "swap area"
		case s.Usage == "filesystem":
			kind = s.Type + " filesystem"
		case s.Usage != "":
			kind = s.Type + " (" + s.Usage + ")"
		}
		parts = append(parts, kind+attrs("UUID", s.UUID, "LABEL", s.Label))
	}
	if s.PTType != "" {
		parts = append(parts, s.PTType+" partition table"+attrs("PTUUID", s.PTUUID))
	}
	if s.Ambivalent {
		parts = append(parts, "several conflicting signatures")
	}
	if len(parts) == 0 || s.Ambivalent {
		// Only wipefs saw something (or blkid could not decide): list what it saw.
		var seen []string
		for _, f := range s.Found {
			seen = append(seen, fmt.Sprintf("%s at offset %s", f.Type, f.Offset))
		}
		if len(seen) > 0 {
			parts = append(parts, "signatures: "+strings.Join(seen, ", "))
		}
	}
	return strings.Join(parts, "; ")
}

func attrs(kv ...string) string {
	var set []string
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			set = append(set, kv[i]+"="+kv[i+1])
		}
	}
	if len(set) == 0 {
		return ""
	}
	return " (" + strings.Join(set, ", ") + ")"
}

// Expect checks that the device holds exactly a fstype filesystem and, if uuid is not empty,
// that it has that UUID: the check to run before mounting a volume whose UUID was recorded at
// its first format. Anything else wraps ErrForeignSignature.
func (s Signature) Expect(fstype, uuid string) error {
	want := fstype + " filesystem"
	if uuid != "" {
		want += " UUID=" + uuid
	}
	if s.Blank() {
		return fmt.Errorf("%s: %w: expected %s, found no signature at all (blank device)", s.Device, ErrForeignSignature, want)
	}
	ok := s.Type == fstype && s.PTType == "" && !s.Ambivalent && (uuid == "" || strings.EqualFold(s.UUID, uuid))
	for _, f := range s.Found {
		if f.Type != fstype {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("%s: %w: expected %s, found %s", s.Device, ErrForeignSignature, want, s)
	}
	return nil
}

// Probe reports what is on device, using blkid's low-level probe (no cache) and wipefs's list
// of signatures: Blank() only when neither finds anything. A device that cannot be read is an
// error, never blank.
func (l *Linux) Probe(ctx context.Context, device string) (Signature, error) {
	if err := checkReadable(device); err != nil {
		return Signature{}, fmt.Errorf("probe %s: %w", device, err)
	}
	sig := Signature{Device: device}

	// blkid exits 2 when it finds nothing, but also when it cannot open the device: that is why
	// checkReadable ran first.
	out, err := cmdrun.Run(ctx, "blkid", "--probe", "--output", "export", device)
	switch code := cmdrun.ExitCode(err); {
	case err == nil:
		fields, perr := parseExport(out)
		if perr != nil {
			return Signature{}, fmt.Errorf("probe %s: parse blkid output: %w", device, perr)
		}
		sig.Type, sig.UUID, sig.Label = fields["TYPE"], fields["UUID"], fields["LABEL"]
		sig.Usage, sig.Version = fields["USAGE"], fields["VERSION"]
		sig.PTType, sig.PTUUID = fields["PTTYPE"], fields["PTUUID"]
	case code == 2:
		// nothing found
	case code == 8:
		sig.Ambivalent = true
	default:
		return Signature{}, fmt.Errorf("probe %s: %w", device, err)
	}

	out, err = cmdrun.Run(ctx, "wipefs", "--no-act", "--json", "--output", "TYPE,OFFSET,UUID,LABEL,USAGE", device)
	if err != nil {
		return Signature{}, fmt.Errorf("probe %s: %w", device, err)
	}
	found, err := parseWipefs(out)
	if err != nil {
		return Signature{}, fmt.Errorf("probe %s: parse wipefs output %q: %w", device, out, err)
	}
	sig.Found = found
	return sig, nil
}

// checkReadable makes sure device is a block device or regular file with a size and a readable
// first sector.
func checkReadable(device string) error {
	f, err := os.Open(device)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		return fmt.Errorf("not a block device or image file (%v)", fi.Mode().Type())
	}
	if fi.Mode()&os.ModeCharDevice != 0 {
		return errors.New("is a character device, not a block device")
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("get size: %w", err)
	}
	if size == 0 {
		return errors.New("size is 0 bytes (attached but not ready, or an empty image)")
	}
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read first sector: %w", err)
	}
	return nil
}

// parseExport parses blkid -o export: KEY=value lines; values are shell-escaped with backslashes.
func parseExport(out []byte) (map[string]string, error) {
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %q is not KEY=value", line)
		}
		fields[k] = unshell(v)
	}
	return fields, sc.Err()
}

// unshell undoes blkid's backslash escaping of special characters in export values.
func unshell(v string) string {
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

func parseWipefs(out []byte) ([]Found, error) {
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil
	}
	var doc struct {
		Signatures []Found `json:"signatures"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, err
	}
	return doc.Signatures, nil
}
