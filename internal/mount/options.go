package mount

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Mount options users may pass (docker volume create -o mountopts=...). Anything not listed is
// refused: options such as suid, dev, nobarrier or errors=panic trade safety for little.
var (
	// flagOptions apply to every filesystem.
	flagOptions = []string{
		"async", "dirsync", "discard", "lazytime", "noatime", "nodev", "nodiratime", "nodiscard",
		"noexec", "nosuid", "relatime", "ro", "rw", "strictatime", "sync",
	}

	ext4Flags  = []string{"barrier", "journal_checksum", "noauto_da_alloc"}
	ext4Values = map[string]valueRule{
		"data":   oneOf("ordered", "journal", "writeback"),
		"commit": intRange(0, 3600, "<seconds 0-3600>"),
		"errors": oneOf("remount-ro", "continue"),
	}

	xfsFlags = []string{
		"gquota", "grpquota", "inode32", "inode64", "largeio", "noquota", "nolargeio",
		"pquota", "prjquota", "uquota", "usrquota", "wsync",
	}
	xfsValues = map[string]valueRule{
		"logbufs":  intRange(2, 8, "<2-8>"),
		"logbsize": oneOf("16k", "32k", "64k", "128k", "256k"),
		"allocsize": {
			desc: "<size, e.g. 64k or 1m>",
			ok:   regexp.MustCompile(`^[1-9][0-9]{0,9}[kmgKMG]?$`).MatchString,
		},
	}
)

type valueRule struct {
	desc string
	ok   func(string) bool
}

func oneOf(vals ...string) valueRule {
	return valueRule{desc: strings.Join(vals, "|"), ok: func(v string) bool {
		for _, a := range vals {
			if v == a {
				return true
			}
		}
		return false
	}}
}

func intRange(lo, hi int, desc string) valueRule {
	return valueRule{desc: desc, ok: func(v string) bool {
		n, err := strconv.Atoi(v)
		return err == nil && n >= lo && n <= hi && strconv.Itoa(n) == v
	}}
}

// ValidateMountOptions checks options against the allowlist of every supported filesystem
// (ext4 and xfs). Use ValidateMountOptionsFor when the filesystem is known.
func ValidateMountOptions(options []string) error {
	return validate("", options)
}

// ValidateMountOptionsFor checks options against the allowlist for fstype ("ext4", "xfs").
func ValidateMountOptionsFor(fstype string, options []string) error {
	if !supported(fstype) {
		return fmt.Errorf("%w: %q: supported are %s", ErrUnsupportedFilesystem, fstype, strings.Join(supportedFS, ", "))
	}
	return validate(fstype, options)
}

func validate(fstype string, options []string) error {
	var ro, rw bool
	for _, opt := range options {
		if err := validateOne(fstype, opt); err != nil {
			return fmt.Errorf("%w: %v; allowed: %s", ErrInvalidMountOption, err, AllowedMountOptions(fstype))
		}
		ro = ro || opt == "ro"
		rw = rw || opt == "rw"
	}
	if ro && rw {
		return fmt.Errorf("%w: both ro and rw given: pass one of them", ErrInvalidMountOption)
	}
	return nil
}

func validateOne(fstype, opt string) error {
	if opt == "" {
		return fmt.Errorf("empty mount option (a stray comma?)")
	}
	if strings.ContainsAny(opt, ", \t\n\"'\\") {
		return fmt.Errorf("mount option %q contains a comma, space, quote or backslash: pass options one by one", opt)
	}
	for _, f := range flagOptions {
		if opt == f {
			return nil
		}
	}
	key, val, hasVal := strings.Cut(opt, "=")
	type fsRules struct {
		name   string
		flags  []string
		values map[string]valueRule
	}
	all := []fsRules{{"ext4", ext4Flags, ext4Values}, {"xfs", xfsFlags, xfsValues}}
	var elsewhere []string
	for _, r := range all {
		matches := false
		if !hasVal {
			for _, f := range r.flags {
				matches = matches || f == opt
			}
		}
		if rule, known := r.values[key]; known && hasVal {
			if !rule.ok(val) {
				if fstype == "" || fstype == r.name {
					return fmt.Errorf("mount option %q: value %q is not allowed for %s, use %s=%s", opt, val, r.name, key, rule.desc)
				}
			}
			matches = true
		}
		if !matches {
			continue
		}
		if fstype == "" || fstype == r.name {
			return nil
		}
		elsewhere = append(elsewhere, r.name)
	}
	if len(elsewhere) > 0 {
		return fmt.Errorf("mount option %q is for %s, not %s", opt, strings.Join(elsewhere, "/"), fstype)
	}
	return fmt.Errorf("mount option %q is not allowed", opt)
}

// AllowedMountOptions describes the allowed options for fstype ("" for every filesystem).
func AllowedMountOptions(fstype string) string {
	parts := []string{strings.Join(flagOptions, ", ")}
	add := func(name string, flags []string, values map[string]valueRule) {
		items := append([]string(nil), flags...)
		for k, r := range values {
			items = append(items, k+"="+r.desc)
		}
		sort.Strings(items)
		parts = append(parts, name+" only: "+strings.Join(items, ", "))
	}
	if fstype == "" || fstype == "ext4" {
		add("ext4", ext4Flags, ext4Values)
	}
	if fstype == "" || fstype == "xfs" {
		add("xfs", xfsFlags, xfsValues)
	}
	return strings.Join(parts, "; ")
}
