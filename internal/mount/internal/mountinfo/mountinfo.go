// Package mountinfo parses /proc/self/mountinfo (see proc(5)).
package mountinfo

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Entry is one line of mountinfo.
type Entry struct {
	ID, Parent   int
	Major, Minor uint32 // st_dev of the mounted filesystem
	Root         string // the mounted directory inside the filesystem
	MountPoint   string
	Options      string // per-mount options
	FSType       string
	Source       string // e.g. /dev/loop3
	SuperOptions string
}

// Read parses /proc/self/mountinfo.
func Read() ([]Entry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

// Parse parses mountinfo text. Entries come in mount order: a later entry on the same mount
// point hides an earlier one.
func Parse(r io.Reader) ([]Entry, error) {
	var entries []Entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		e, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("parse mountinfo line %q: %w", line, err)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return entries, nil
}

func parseLine(line string) (Entry, error) {
	fields := strings.Split(line, " ")
	sep := -1
	for i := 6; i < len(fields); i++ {
		if fields[i] == "-" {
			sep = i
			break
		}
	}
	if len(fields) < 10 || sep < 0 || sep+2 >= len(fields) {
		return Entry{}, fmt.Errorf("want at least 10 fields with a '-' separator, got %d", len(fields))
	}
	var e Entry
	var err error
	if e.ID, err = strconv.Atoi(fields[0]); err != nil {
		return Entry{}, fmt.Errorf("mount id: %w", err)
	}
	if e.Parent, err = strconv.Atoi(fields[1]); err != nil {
		return Entry{}, fmt.Errorf("parent id: %w", err)
	}
	maj, min, ok := strings.Cut(fields[2], ":")
	if !ok {
		return Entry{}, fmt.Errorf("major:minor %q", fields[2])
	}
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return Entry{}, fmt.Errorf("major:minor %q", fields[2])
	}
	e.Major, e.Minor = uint32(ma), uint32(mi)
	e.Root = Unescape(fields[3])
	e.MountPoint = Unescape(fields[4])
	e.Options = fields[5]
	e.FSType = Unescape(fields[sep+1])
	e.Source = Unescape(fields[sep+2])
	if sep+3 < len(fields) {
		e.SuperOptions = fields[sep+3]
	}
	return e, nil
}

// Unescape undoes the kernel's octal escapes of space, tab, newline and backslash (\040 ...).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
