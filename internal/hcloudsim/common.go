package hcloudsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

const maxBodyBytes = 1 << 20

// decodeBody decodes a JSON request body into v (a schema request struct). An empty body
// counts as {} (hcloud-go sends {} for actions without parameters; curl users send nothing).
func decodeBody(r *http.Request, v any) *apiError {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return newError("json_error", "cannot read the request body: %v", err)
	}
	if len(body) > maxBodyBytes {
		return newError("json_error", "request body is larger than %d bytes", maxBodyBytes)
	}
	return decodeJSON(body, v)
}

func decodeJSON(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return newError("json_error", "invalid JSON in the request body at offset %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		want := typ.Type.String()
		if strings.Contains(want, "IDOrName") {
			want = "an ID or a name"
		}
		return invalidInput(field, "must be "+want+", not a JSON "+typ.Value)
	default:
		return newError("json_error", "invalid JSON in the request body: %v", err)
	}
}

// pathID parses the {id} path parameter of kind.
func pathID(p params, key, kind string) (int64, *apiError) {
	id, err := strconv.ParseInt(p[key], 10, 64)
	if err != nil || id <= 0 {
		return 0, notFound(kind, p[key])
	}
	return id, nil
}

func idOrName(s string) schema.IDOrName {
	if id, err := strconv.ParseInt(s, 10, 64); err == nil {
		return schema.IDOrName{ID: id}
	}
	return schema.IDOrName{Name: s}
}

// listQuery holds the common list parameters.
type listQuery struct {
	page, perPage int
	sel           selector
	name          string
	status        []string
	sort          []string
	q             url.Values
}

var sortRe = regexp.MustCompile(`^[a-z_]+(:(asc|desc))?$`)

func parseListQuery(r *http.Request, sortable ...string) (listQuery, *apiError) {
	q := r.URL.Query()
	lq := listQuery{page: 1, perPage: 25, q: q, name: q.Get("name"), status: q["status"]}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return lq, invalidInput("page", "must be an integer >= 1")
		}
		lq.page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return lq, invalidInput("per_page", "must be an integer between 1 and 50")
		}
		lq.perPage = min(n, 50)
	}
	sel, err := parseSelector(q.Get("label_selector"))
	if err != nil {
		return lq, invalidInput("label_selector", "invalid label selector: "+err.Error())
	}
	lq.sel = sel
	for _, so := range q["sort"] {
		field, _, _ := strings.Cut(so, ":")
		if !sortRe.MatchString(so) || !contains(sortable, field) {
			return lq, invalidInput("sort", "must be one of "+strings.Join(sortable, ", ")+" with optional :asc or :desc")
		}
		lq.sort = append(lq.sort, so)
	}
	return lq, nil
}

// sortItems sorts items by the "sort" parameters (default: id ascending). key returns
// the value of a field: a number (isNum) or a string.
func sortItems[T any](items []T, sorts []string, key func(item T, field string) (num int64, str string, isNum bool)) {
	if len(sorts) == 0 {
		sorts = []string{"id"}
	}
	sort.SliceStable(items, func(a, b int) bool {
		for _, so := range sorts {
			field, dir, _ := strings.Cut(so, ":")
			na, sa, isNum := key(items[a], field)
			nb, sb, _ := key(items[b], field)
			c := strings.Compare(sa, sb)
			if isNum {
				c = cmpInt(na, nb)
			}
			if dir == "desc" {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		return false
	})
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// paginate returns the requested page of items and the meta object.
func paginate[T any](items []T, lq listQuery) ([]T, map[string]any) {
	lo, hi, meta := lq.bounds(len(items))
	return append([]T{}, items[lo:hi]...), meta
}

// bounds returns the bounds of the requested page and the meta object.
func (lq listQuery) bounds(total int) (lo, hi int, meta map[string]any) {
	last := (total + lq.perPage - 1) / lq.perPage
	if last == 0 {
		last = 1
	}
	lo = min((lq.page-1)*lq.perPage, total)
	hi = min(lo+lq.perPage, total)
	p := schema.MetaPagination{Page: lq.page, PerPage: lq.perPage, LastPage: last, TotalEntries: total}
	if lq.page > 1 {
		p.PreviousPage = lq.page - 1
	}
	if lq.page < last {
		p.NextPage = lq.page + 1
	}
	return lo, hi, metaJSON(p)
}

// metaJSON renders schema.MetaPagination with null for absent previous/next pages, as
// the API does.
func metaJSON(p schema.MetaPagination) map[string]any {
	b, _ := json.Marshal(p)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if p.PreviousPage == 0 {
		m["previous_page"] = nil
	}
	if p.NextPage == 0 {
		m["next_page"] = nil
	}
	return map[string]any{"pagination": m}
}

// listResponse renders {"<key>": items, "meta": {...}}.
func listResponse(key string, items any, meta map[string]any) map[string]any {
	return map[string]any{key: items, "meta": meta}
}

func timeKey(t time.Time) int64 { return t.UnixNano() }

var (
	serverNameRe = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$`)
	volumeNameRe = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$`)
)

// validateServerName: a hostname as per RFC 1123, at most 63 characters.
func validateServerName(name string) *apiError {
	switch {
	case name == "":
		return invalidInput("name", "is required")
	case len(name) > 63:
		return invalidInput("name", "is too long (at most 63 characters)")
	case !serverNameRe.MatchString(name):
		return invalidInput("name", "must be a valid hostname (RFC 1123): letters, digits, '-' and '.', starting and ending with a letter or digit")
	}
	return nil
}

// validateVolumeName: at most 63 characters of letters, digits, '-', '_', '.', starting
// and ending with a letter or digit.
func validateVolumeName(name string) *apiError {
	switch {
	case name == "":
		return invalidInput("name", "is required")
	case len(name) > 63:
		return invalidInput("name", "is too long (at most 63 characters)")
	case !volumeNameRe.MatchString(name):
		return invalidInput("name", "must contain only letters, digits, '-', '_' and '.', and start and end with a letter or digit")
	}
	return nil
}

// validateFreeName: names of SSH keys and firewalls may contain spaces.
func validateFreeName(name string) *apiError {
	switch {
	case strings.TrimSpace(name) == "":
		return invalidInput("name", "is required")
	case len(name) > 128:
		return invalidInput("name", "is too long (at most 128 characters)")
	case strings.ContainsAny(name, "\x00\n\r\t"):
		return invalidInput("name", "must not contain control characters")
	}
	return nil
}

func copyLabels(l *map[string]string) map[string]string {
	out := map[string]string{}
	if l != nil {
		for k, v := range *l {
			out[k] = v
		}
	}
	return out
}
