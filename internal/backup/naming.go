package backup

import (
	"fmt"
	"regexp"
	"sort"
	"time"
)

const timeLayout = "20060102T150405Z"

var archiveName = regexp.MustCompile(`^(.+)-(\d{8}T\d{6}Z)\.tar(\.zst|\.gz)?(\.age)?$`)

// ArchiveName is VOLUME-YYYYMMDDTHHMMSSZ.tar.zst[.age].
func ArchiveName(volume string, t time.Time, c Compression, encrypted bool) string {
	n := fmt.Sprintf("%s-%s.tar%s", volume, t.UTC().Format(timeLayout), c.Ext())
	if encrypted {
		n += ".age"
	}
	return n
}

// ChecksumName is the sidecar's name.
func ChecksumName(archive string) string { return archive + ".sha256" }

// Backup is one archive found in a store.
type Backup struct {
	Name        string      `json:"name"`
	Volume      string      `json:"volume"`
	Time        time.Time   `json:"time"`
	Size        int64       `json:"size"`
	Compression Compression `json:"compression"`
	Encrypted   bool        `json:"encrypted"`
	// HasChecksum is false for an archive without its .sha256: an interrupted or foreign upload.
	HasChecksum bool `json:"has_checksum"`
}

// ParseArchiveName splits a name made by ArchiveName.
func ParseArchiveName(name string) (Backup, bool) {
	m := archiveName.FindStringSubmatch(name)
	if m == nil {
		return Backup{}, false
	}
	t, err := time.Parse(timeLayout, m[2])
	if err != nil {
		return Backup{}, false
	}
	c, enc, _ := compressionFromName(name)
	return Backup{Name: name, Volume: m[1], Time: t, Compression: c, Encrypted: enc}, true
}

// backupsFromObjects turns a store listing into backups, newest first.
func backupsFromObjects(objs []Object) []Backup {
	sums := map[string]bool{}
	for _, o := range objs {
		sums[o.Name] = true
	}
	var out []Backup
	for _, o := range objs {
		b, ok := ParseArchiveName(o.Name)
		if !ok {
			continue
		}
		b.Size = o.Size
		b.HasChecksum = sums[ChecksumName(o.Name)]
		out = append(out, b)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.After(out[j].Time)
		}
		return out[i].Name < out[j].Name
	})
	return out
}
