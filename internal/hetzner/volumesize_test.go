package hetzner

import (
	"strings"
	"testing"
)

func TestParseVolumeSize(t *testing.T) {
	for _, tt := range []struct {
		in      string
		current int
		want    int
		err     string
	}{
		{"50", 20, 50, ""},
		{"50G", 20, 50, ""},
		{"50gb", 20, 50, ""},
		{" 50 ", 20, 50, ""},
		{"+10G", 20, 30, ""},
		{"+10", 20, 30, ""},
		{"1T", 20, 1024, ""},
		{"+1TB", 20, 1044, ""},
		{"20", 20, 20, ""}, // the same size: the caller's no-op
		{"15", 20, 15, ""}, // a shrink: the API refuses it with its reason
		{"10240", 10, 10240, ""},
		{"+10240", 10, 0, "more than a Hetzner volume can hold"},
		{"5", 20, 0, "less than the smallest"},
		{"18014398509481989T", 20, 0, "more than a Hetzner volume can hold"}, // n*1024 wraps to 5120
		{"11T", 20, 0, "more than a Hetzner volume can hold"},
		{"-10G", 20, 0, "whole GB"},
		{"+-5", 20, 0, "whole GB"},
		{"++5", 20, 0, "whole GB"},
		{"50M", 20, 0, "whole GB"},
		{"1.5T", 20, 0, "whole GB"},
		{"", 20, 0, "whole GB"},
		{"0", 20, 0, "whole GB"},
		{"G", 20, 0, "whole GB"},
	} {
		got, err := ParseVolumeSize(tt.in, tt.current)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseVolumeSize(%q, %d) = %d, %v; want an error with %q", tt.in, tt.current, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseVolumeSize(%q, %d) = %d, %v; want %d", tt.in, tt.current, got, err, tt.want)
		}
	}
}
