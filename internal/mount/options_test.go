package mount_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/dockbridge/dockbridge/internal/mount"
)

func TestValidateMountOptions(t *testing.T) {
	tests := []struct {
		name    string
		fstype  string // "" = ValidateMountOptions (any supported filesystem)
		options []string
		wantErr string // "" = valid
	}{
		{"no options", "", nil, ""},
		{"common flags", "", []string{"noatime", "nodiratime", "discard", "nodev", "nosuid", "noexec"}, ""},
		{"read-only", "ext4", []string{"ro"}, ""},
		{"ext4 journaling mode", "ext4", []string{"data=journal", "commit=30"}, ""},
		{"ext4 errors remount-ro", "ext4", []string{"errors=remount-ro"}, ""},
		{"xfs tuning", "xfs", []string{"inode64", "logbufs=8", "logbsize=256k", "noquota", "allocsize=64k"}, ""},
		{"xfs project quota (docker storage quotas)", "xfs", []string{"prjquota"}, ""},
		{"fs-specific option with unknown fs", "", []string{"data=ordered", "inode64"}, ""},

		{"suid is refused", "", []string{"suid"}, `"suid" is not allowed`},
		{"dev is refused", "ext4", []string{"dev"}, `"dev" is not allowed`},
		{"nobarrier is refused", "ext4", []string{"nobarrier"}, `"nobarrier" is not allowed`},
		{"errors=panic is refused", "ext4", []string{"errors=panic"}, "use errors=remount-ro|continue"},
		{"bad data mode", "ext4", []string{"data=fast"}, "use data=ordered|journal|writeback"},
		{"commit not a number", "ext4", []string{"commit=soon"}, "commit=<seconds 0-3600>"},
		{"commit out of range", "ext4", []string{"commit=99999"}, "commit=<seconds 0-3600>"},
		{"logbufs out of range", "xfs", []string{"logbufs=9"}, "logbufs=<2-8>"},
		{"ext4 option on xfs", "xfs", []string{"data=ordered"}, `"data=ordered" is for ext4, not xfs`},
		{"xfs option on ext4", "ext4", []string{"inode64"}, `"inode64" is for xfs, not ext4`},
		{"comma smuggles a second option", "", []string{"noatime,suid"}, "contains a comma"},
		{"empty option", "", []string{""}, "empty mount option"},
		{"ro and rw", "", []string{"ro", "rw"}, "both ro and rw"},
		{"unsupported filesystem", "ntfs", []string{"noatime"}, "unsupported filesystem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.fstype == "" {
				err = mount.ValidateMountOptions(tt.options)
			} else {
				err = mount.ValidateMountOptionsFor(tt.fstype, tt.options)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if tt.fstype != "ntfs" && !errors.Is(err, mount.ErrInvalidMountOption) {
				t.Errorf("%v does not wrap ErrInvalidMountOption", err)
			}
		})
	}
}

// A rejected option tells the user what they may use instead.
func TestValidateMountOptionsListsAllowed(t *testing.T) {
	err := mount.ValidateMountOptionsFor("xfs", []string{"suid"})
	for _, want := range []string{"allowed:", "noatime", "inode64", "logbufs=<2-8>"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "data=") {
		t.Errorf("xfs error lists ext4 options: %v", err)
	}
}

func TestValidateLabel(t *testing.T) {
	tests := []struct {
		name, fstype, label string
		ok                  bool
	}{
		{"empty", "ext4", "", true},
		{"ext4 16 bytes", "ext4", "abcdefghijklmnop", true},
		{"ext4 17 bytes", "ext4", "abcdefghijklmnopq", false},
		{"xfs 12 bytes", "xfs", "node1_data.x", true},
		{"xfs 13 bytes", "xfs", "node1_data.xy", false},
		{"space", "ext4", "my data", false},
		{"leading dash", "ext4", "-F", false},
		{"slash", "xfs", "a/b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mount.ValidateLabel(tt.fstype, tt.label)
			if tt.ok && err != nil {
				t.Errorf("got %v, want valid", err)
			}
			if !tt.ok && !errors.Is(err, mount.ErrInvalidLabel) {
				t.Errorf("got %v, want ErrInvalidLabel", err)
			}
		})
	}
}
