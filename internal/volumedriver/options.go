package volumedriver

import (
	"encoding/base32"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/dockbridge/dockbridge/internal/hetzner"
	"github.com/dockbridge/dockbridge/internal/mount"
)

// ErrBadOption marks a create option or volume name the plugin refuses.
var ErrBadOption = errors.New("invalid volume option")

// CreateOptions are the parsed `-o` options of `docker volume create -d hetzner`.
type CreateOptions struct {
	SizeGB     int
	FSType     string
	Labels     map[string]string // user labels, put on the Hetzner volume
	UID, GID   int               // owner of the root directory, -1 to keep root
	Mode       uint32            // mode of the root directory, 0 to keep mkfs's default
	MountOpts  []string
	Protection bool
}

// optionHelp lists the accepted options, for errors.
const optionHelp = "size=<GB 10-10240>, fstype=ext4|xfs, labels=k=v[,k=v], uid=<n>, gid=<n>, mode=<octal, e.g. 0750>, mountopts=<opt[,opt]>, protection=true|false"

// ParseCreateOptions validates the options of a create request; defaults fill what is missing.
func ParseCreateOptions(opts map[string]string, s Settings) (CreateOptions, error) {
	o := CreateOptions{SizeGB: s.DefaultSizeGB, FSType: s.DefaultFSType, UID: -1, GID: -1, Protection: s.DefaultProtection}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// fstype first: mountopts are checked against it.
	if v, ok := opts["fstype"]; ok {
		if err := checkFSType(v); err != nil {
			fail("fstype=%q: %v", v, err)
		} else {
			o.FSType = v
		}
	}
	mountOptsSet := false
	for _, k := range keys {
		v := opts[k]
		switch k {
		case "fstype":
		case "size":
			n, err := parseSize(v)
			if err != nil {
				fail("size=%q: %v", v, err)
			}
			o.SizeGB = n
		case "labels":
			l, err := parseLabels(v)
			if err != nil {
				fail("labels=%q: %v", v, err)
			}
			o.Labels = l
		case "uid", "gid":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1<<31-2 {
				fail("%s=%q: want a numeric id such as 1000", k, v)
				continue
			}
			if k == "uid" {
				o.UID = n
			} else {
				o.GID = n
			}
		case "mode":
			m, err := strconv.ParseUint(v, 8, 32)
			if err != nil || m > 0o7777 || m == 0 {
				fail("mode=%q: want an octal mode such as 0755 or 1777", v)
				continue
			}
			o.Mode = uint32(m)
		case "mountopts":
			mo, err := parseMountOpts(o.FSType, v)
			if err != nil {
				fail("mountopts=%q: %v", v, err)
			}
			o.MountOpts = mo
			mountOptsSet = true
		case "protection":
			b, err := strconv.ParseBool(v)
			if err != nil {
				fail("protection=%q: want true or false", v)
			}
			o.Protection = b
		default:
			fail("unknown option %q (accepted: %s)", k, optionHelp)
		}
	}
	if !mountOptsSet && len(s.DefaultMountOpts) > 0 {
		if err := mount.ValidateMountOptionsFor(o.FSType, s.DefaultMountOpts); err == nil {
			o.MountOpts = s.DefaultMountOpts
		}
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("%w: %s", ErrBadOption, strings.Join(errs, "; "))
	}
	return o, nil
}

func parseSize(v string) (int, error) {
	s := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(v), "G"), "GB")
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("want a whole number of GB between %d and %d, e.g. size=20", hetzner.MinVolumeSizeGB, hetzner.MaxVolumeSizeGB)
	}
	if n < hetzner.MinVolumeSizeGB || n > hetzner.MaxVolumeSizeGB {
		return 0, fmt.Errorf("%d GB is outside what Hetzner Cloud allows: %d to %d GB", n, hetzner.MinVolumeSizeGB, hetzner.MaxVolumeSizeGB)
	}
	return n, nil
}

func checkFSType(v string) error {
	if v != "ext4" && v != "xfs" {
		return errors.New("supported filesystems are ext4 and xfs")
	}
	return nil
}

func parseMountOpts(fstype, v string) ([]string, error) {
	opts := strings.Split(v, ",")
	if err := mount.ValidateMountOptionsFor(fstype, opts); err != nil {
		return nil, err
	}
	return opts, nil
}

// Hetzner label rules: keys are an optional DNS-subdomain prefix and "/" and a name of at most
// 63 characters; values are at most 63 characters; both start and end alphanumeric and may
// contain '-', '_' and '.'.
var (
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?$`)
	labelValueRE = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?)?$`)
	dnsPrefixRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
)

func checkLabelKey(k string) error {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	}
	if hasPrefix && (len(prefix) > 253 || !dnsPrefixRE.MatchString(prefix)) {
		return fmt.Errorf("label key %q: the prefix before '/' must be a DNS name such as example.com", k)
	}
	if !labelNameRE.MatchString(name) {
		return fmt.Errorf("label key %q: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", k)
	}
	return nil
}

func checkLabelValue(v string) error {
	if !labelValueRE.MatchString(v) {
		return fmt.Errorf("label value %q: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", v)
	}
	return nil
}

func parseLabels(v string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value (separate labels with commas: labels=env=prod,team=web)", kv)
		}
		if err := checkLabelKey(k); err != nil {
			return nil, err
		}
		if err := checkLabelValue(val); err != nil {
			return nil, err
		}
		if reservedLabel(k) {
			return nil, fmt.Errorf("label key %q is reserved for the plugin", k)
		}
		out[k] = val
	}
	return out, nil
}

// CheckVolumeName checks that a Docker volume name can be a Hetzner volume name and a label
// value: the Hetzner volume gets the same name, so both must fit Hetzner's rules.
func CheckVolumeName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty volume name", ErrBadOption)
	}
	if len(name) > 63 || !labelNameRE.MatchString(name) {
		return fmt.Errorf("%w: volume name %q can't be a Hetzner Cloud volume name: use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", ErrBadOption, name)
	}
	return nil
}

// Labels the plugin keeps on every volume it creates. They are where every plugin on every
// server in the project sees who holds a volume.
const (
	labelManagedBy = "managed-by"
	managedByValue = "dockbridge"
	labelName      = "dockbridge/volume"    // the Docker volume name
	labelFSType    = "dockbridge/fstype"    // filesystem to make at first format
	labelUUID      = "dockbridge/fs-uuid"   // filesystem UUID recorded at first format (or first adoption)
	labelUID       = "dockbridge/uid"       // owner of the root directory, applied at first format
	labelGID       = "dockbridge/gid"       // group of the root directory
	labelMode      = "dockbridge/mode"      // octal mode of the root directory
	labelMountOpts = "dockbridge/mountopts" // base32 of the comma-joined mount options
	labelHolder    = "dockbridge/holder"    // id of the server that attached it and may be using it
	labelReleased  = "dockbridge/released"  // id of the server that attached it and no longer uses it
)

func reservedLabel(k string) bool {
	return k == labelManagedBy || strings.HasPrefix(k, "dockbridge/")
}

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func encodeMountOpts(opts []string) (string, error) {
	if len(opts) == 0 {
		return "", nil
	}
	s := b32.EncodeToString([]byte(strings.Join(opts, ",")))
	if len(s) > 63 {
		return "", fmt.Errorf("%w: mountopts %q are too long to record on the volume (at most 39 characters)", ErrBadOption, strings.Join(opts, ","))
	}
	return s, nil
}

func decodeMountOpts(s string) []string {
	if s == "" {
		return nil
	}
	b, err := b32.DecodeString(s)
	if err != nil {
		return nil
	}
	return strings.Split(string(b), ",")
}

// createLabels are the Hetzner labels of a new volume.
func createLabels(name string, o CreateOptions, holder int64) (map[string]string, error) {
	l := map[string]string{}
	for k, v := range o.Labels {
		l[k] = v
	}
	l[labelManagedBy] = managedByValue
	l[labelName] = name
	l[labelFSType] = o.FSType
	if o.UID >= 0 {
		l[labelUID] = strconv.Itoa(o.UID)
	}
	if o.GID >= 0 {
		l[labelGID] = strconv.Itoa(o.GID)
	}
	if o.Mode != 0 {
		l[labelMode] = fmt.Sprintf("%04o", o.Mode)
	}
	mo, err := encodeMountOpts(o.MountOpts)
	if err != nil {
		return nil, err
	}
	if mo != "" {
		l[labelMountOpts] = mo
	}
	if holder != 0 {
		l[labelHolder] = strconv.FormatInt(holder, 10)
	}
	return l, nil
}

// ours reports whether a Hetzner volume was created by this plugin for Docker volume name.
func ours(v *hetzner.Volume, name string) bool {
	return v.Labels[labelManagedBy] == managedByValue && v.Labels[labelName] == name
}
