package backup

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
)

// NoBackupError says that no store holds an archive of that name, and names the archives that
// come nearest (a typo, or the volume's name where an archive's was meant).
type NoBackupError struct {
	Name string
	// Where lists the places looked in: a store, or why a store could not be read.
	Where   []string
	Nearest []string
}

func (e *NoBackupError) Error() string {
	msg := fmt.Sprintf("no backup named %s in %s", e.Name, strings.Join(e.Where, " or "))
	if len(e.Nearest) > 0 {
		msg += "; the nearest:\n  " + strings.Join(e.Nearest, "\n  ")
	}
	return msg
}

// Locate returns the first of stores that holds an object named name (every archive that List
// lists, and any other file by its exact name). When none does, the error is a *NoBackupError
// with the nearest archive names of all the stores.
func Locate(ctx context.Context, name string, stores ...Store) (Store, error) {
	nb := &NoBackupError{Name: name}
	var all []Backup
	for _, s := range stores {
		objs, err := s.List(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if o.Name == name {
				return s, nil
			}
		}
		nb.Where = append(nb.Where, s.String())
		all = append(all, backupsFromObjects(objs)...)
	}
	nb.Nearest = nearest(name, all, 5)
	return nil, nb
}

// nearest ranks archive names for a name that matched none: the archives of a volume of that
// name (or that begin with it) first, newest first, then the rest by edit distance; at most n,
// and none that is further than half the name's length.
func nearest(name string, bs []Backup, n int) []string {
	type cand struct {
		b    Backup
		rank int
	}
	var cs []cand
	for _, b := range bs {
		switch {
		case b.Volume == name || strings.HasPrefix(b.Name, name):
			cs = append(cs, cand{b, 0})
		default:
			if d := distance(name, b.Name); d <= max(len(name)/2, 2) {
				cs = append(cs, cand{b, d})
			}
		}
	}
	slices.SortStableFunc(cs, func(a, b cand) int {
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		return b.b.Time.Compare(a.b.Time)
	})
	var out []string
	for _, c := range cs {
		if !slices.Contains(out, c.b.Name) {
			out = append(out, c.b.Name)
		}
		if len(out) == n {
			break
		}
	}
	return out
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
