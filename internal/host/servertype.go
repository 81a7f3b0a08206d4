package host

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dockbridge/dockbridge/internal/hetzner"
)

// DefaultServerTypeRule is how up chooses the server type of a new server when neither a flag
// nor the settings name one: from the live catalog, never a fixed name (Hetzner retires
// types; cx22 was removed in January 2026).
const DefaultServerTypeRule = "the cheapest x86 type with at least 4 GB of memory that is available and not deprecated in the location"

const (
	minDefaultMemoryGB = 4
	maxAlternatives    = 8
)

// newServerType remembers the catalog and the choice of one command.
type newServerType struct {
	types    []*hetzner.ServerType
	location string
	name     string
}

// serverTypeFor returns the server type of a new server in location: the configured one
// if it can be ordered there (with a warning when it is deprecated there), else the default
// choice. It fails, naming the alternatives, when the configured type cannot be ordered
// there. The catalog is asked once per command.
func (d *Deps) serverTypeFor(ctx context.Context, location string) (_ string, err error) {
	if d.newType.name != "" && d.newType.location == location {
		return d.newType.name, nil
	}
	step := d.Progress.Start("Server type")
	if d.newType.types == nil {
		d.newType.types, err = d.API.ServerTypes(ctx)
	}
	var pick typePick
	if err == nil {
		pick, err = pickServerType(d.newType.types, d.Config.ServerType, location, d.Now())
	}
	if err == nil {
		err = d.checkImageFits(ctx, pick.name)
	}
	if err == nil {
		step.Note("%s", pick.note)
	}
	step.End(&err)
	if err != nil {
		return "", err
	}
	d.newType.location, d.newType.name = location, pick.name
	if pick.warning != "" {
		d.Progress.Printf("warning: %s\n", pick.warning)
		d.warnings = append(d.warnings, pick.warning)
	}
	return pick.name, nil
}

type typePick struct {
	name, note, warning string
}

// pickServerType is the choice itself, a pure function of the catalog, the configured type
// (empty: choose), the location and the time.
func pickServerType(types []*hetzner.ServerType, explicit, location string, now time.Time) (typePick, error) {
	orderable := orderableIn(types, location, now)
	if explicit == "" {
		var best *hetzner.ServerType
		for _, t := range orderable {
			l, _ := t.In(location)
			if t.Architecture == "x86" && t.MemoryGB >= minDefaultMemoryGB && !l.Deprecated() && (best == nil || cheaper(t, best, location)) {
				best = t
			}
		}
		if best == nil {
			return typePick{}, fmt.Errorf("no x86 server type with at least %d GB of memory can be ordered in %s right now: choose one with --server-type (or docker dockbridge settings set server_type NAME), or another --location%s",
				minDefaultMemoryGB, location, alternatives(orderable, location))
		}
		l, _ := best.In(location)
		return typePick{name: best.Name, note: fmt.Sprintf("%s (%s; the cheapest x86 type with at least %d GB available in %s; --server-type chooses another)", best.Name, describeType(best, l), minDefaultMemoryGB, location)}, nil
	}
	i := slices.IndexFunc(types, func(t *hetzner.ServerType) bool { return t.Name == explicit })
	if i < 0 {
		return typePick{}, fmt.Errorf("server type %q does not exist (Hetzner retires types: cx22 was removed in 2026); choose another with --server-type or docker dockbridge settings set server_type%s", explicit, alternatives(orderable, location))
	}
	t := types[i]
	l, offered := t.In(location)
	switch {
	case !offered:
		return typePick{}, fmt.Errorf("server type %s is not offered in %s (it is in %s): choose another type, or another --location%s", explicit, location, strings.Join(locationsOf(t), ", "), alternatives(orderable, location))
	case l.Deprecated() && !now.Before(l.UnavailableAfter):
		return typePick{}, fmt.Errorf("server type %s is deprecated in %s and can no longer be ordered there (since %s): choose another type%s", explicit, location, l.UnavailableAfter.UTC().Format(time.DateOnly), alternatives(orderable, location))
	case !l.Available:
		return typePick{}, fmt.Errorf("server type %s is not available in %s right now (Hetzner has none in stock there): nothing was created; try again later, or choose another type or --location%s", explicit, location, alternatives(orderable, location))
	}
	p := typePick{name: t.Name, note: fmt.Sprintf("%s (%s, as set)", t.Name, describeType(t, l))}
	if l.Deprecated() {
		p.warning = fmt.Sprintf("server type %s is deprecated in %s: it becomes unavailable there after %s (a server that has it keeps running, but no new one can be made with it then); choose another type with --server-type or docker dockbridge settings set server_type, or unset it to let up choose%s",
			t.Name, location, l.UnavailableAfter.UTC().Format(time.DateOnly), alternatives(orderable, location))
	}
	return p, nil
}

// orderableIn lists the types that can be ordered in location now, cheapest first.
func orderableIn(types []*hetzner.ServerType, location string, now time.Time) []*hetzner.ServerType {
	var out []*hetzner.ServerType
	for _, t := range types {
		if l, ok := t.In(location); ok && l.Available && (!l.Deprecated() || now.Before(l.UnavailableAfter)) {
			out = append(out, t)
		}
	}
	slices.SortStableFunc(out, func(a, b *hetzner.ServerType) int {
		switch {
		case cheaper(a, b, location):
			return -1
		case cheaper(b, a, location):
			return 1
		}
		return 0
	})
	return out
}

// cheaper orders by the hourly price in location, then by name.
func cheaper(a, b *hetzner.ServerType, location string) bool {
	la, _ := a.In(location)
	lb, _ := b.In(location)
	if la.HourlyGross != lb.HourlyGross {
		return la.HourlyGross < lb.HourlyGross
	}
	return a.Name < b.Name
}

func describeType(t *hetzner.ServerType, l hetzner.ServerTypeLocation) string {
	s := fmt.Sprintf("%s, %d vCPU, %g GB, %.4f/h", t.Architecture, t.Cores, t.MemoryGB, l.HourlyGross)
	if l.Deprecated() {
		s += ", deprecated: unavailable after " + l.UnavailableAfter.UTC().Format(time.DateOnly)
	}
	return s
}

// alternatives names what can be ordered in location instead and is not deprecated there,
// cheapest first.
func alternatives(orderable []*hetzner.ServerType, location string) string {
	orderable = slices.DeleteFunc(slices.Clone(orderable), func(t *hetzner.ServerType) bool { l, _ := t.In(location); return l.Deprecated() })
	if len(orderable) == 0 {
		return fmt.Sprintf("\nNo server type can be ordered in %s right now.", location)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nServer types that can be ordered in %s now (not deprecated), cheapest first:", location)
	for i, t := range orderable {
		if i == maxAlternatives {
			fmt.Fprintf(&b, "\n  and %d more (hcloud server-type list)", len(orderable)-i)
			break
		}
		l, _ := t.In(location)
		fmt.Fprintf(&b, "\n  %-7s %s", t.Name, describeType(t, l))
	}
	return b.String()
}

func locationsOf(t *hetzner.ServerType) []string {
	var out []string
	for _, l := range t.Locations {
		out = append(out, l.Location)
	}
	return out
}

// checkImageFits refuses, before anything is created, an image that does not exist in the
// server type's architecture (one request): Hetzner would refuse the server after the key,
// firewall and volume are made, with a less helpful message.
func (d *Deps) checkImageFits(ctx context.Context, typeName string) error {
	i := slices.IndexFunc(d.newType.types, func(t *hetzner.ServerType) bool { return t.Name == typeName })
	if i < 0 || d.newType.types[i].Architecture == "" {
		return nil
	}
	archs, err := d.API.ImageArchitectures(ctx, d.Config.Image)
	if err != nil {
		return err
	}
	return imageFits(d.Config.Image, archs, typeName, d.newType.types[i].Architecture)
}

// archNames says what Hetzner's architecture names mean on a laptop.
var archNames = map[string]string{"x86": "x86 (amd64)", "arm": "Arm (arm64, Ampere)"}

// imageFits is the rule: the image must exist in the type's architecture ("x86", "arm").
func imageFits(image string, imageArchs []string, typeName, typeArch string) error {
	switch {
	case slices.Contains(imageArchs, typeArch):
		return nil
	case len(imageArchs) == 0:
		return fmt.Errorf("image %q does not exist: choose one with --image (or docker dockbridge settings set image NAME), e.g. docker-ce", image)
	}
	other := "an Arm type such as cax11"
	if typeArch == "arm" {
		other = "an x86 type such as cx23"
	}
	var names []string
	for _, a := range imageArchs {
		names = append(names, cmp.Or(archNames[a], a))
	}
	return fmt.Errorf("image %q exists only for %s, but server type %s is %s: nothing was created; choose %s with --server-type, or an image built for %s with --image (docker-ce and debian-12 exist for both)",
		image, strings.Join(names, " and "), typeName, cmp.Or(archNames[typeArch], typeArch), other, cmp.Or(archNames[typeArch], typeArch))
}
