package mountinfo

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	text := `42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw,discard
101 27 7:3 / /mnt/my\040vol rw,noatime - xfs /dev/loop3 rw,attr2
102 27 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	entries, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("got %d entries, want 3", len(entries))
	}
	tests := []struct {
		name string
		got  Entry
		want Entry
	}{
		{"optional field and bind root", entries[0], Entry{ID: 42, Parent: 27, Major: 254, Minor: 0, Root: "/var/lib/docker", MountPoint: "/var/lib/docker", Options: "rw,relatime", FSType: "ext4", Source: "/dev/vda", SuperOptions: "rw,discard"}},
		{"escaped space in mount point", entries[1], Entry{ID: 101, Parent: 27, Major: 7, Minor: 3, Root: "/", MountPoint: "/mnt/my vol", Options: "rw,noatime", FSType: "xfs", Source: "/dev/loop3", SuperOptions: "rw,attr2"}},
		{"no optional fields", entries[2], Entry{ID: 102, Parent: 27, Major: 0, Minor: 38, Root: "/", MountPoint: "/sys/fs/cgroup/unified", Options: "rw,relatime", FSType: "cgroup2", Source: "cgroup2", SuperOptions: "rw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got  %+v\nwant %+v", tt.got, tt.want)
			}
		})
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	if _, err := Parse(strings.NewReader("not a mountinfo line\n")); err == nil {
		t.Fatal("Parse accepted a malformed line")
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:         "/plain",
		`/a\040b`:        "/a b",
		`/tab\011x`:      "/tab\tx",
		`/back\134slash`: `/back\slash`,
		`/trailing\04`:   `/trailing\04`,
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
