package hcloudsim

import (
	"net/http"
	"sort"
	"strings"
)

// router is a small path router. It exists (instead of http.ServeMux patterns) because
// the Hetzner API has overlapping routes such as /v1/volumes/actions/{id} and
// /v1/volumes/{id}/actions that ServeMux refuses, and because the simulator needs the
// matched template ("GET /v1/volumes/{id}") for its statistics and fault targeting.
type router struct {
	routes []*route
}

type route struct {
	method   string
	template string
	segs     []string
	literals int
	h        handlerFunc
}

// handlerFunc handles one API call. It returns the status and body to send, or an
// *apiError. Returning (0, nil, nil) means the handler wrote the answer itself.
type handlerFunc func(r *http.Request, p params) (int, any, *apiError)

type params map[string]string

func (rt *router) handle(method, template string, h handlerFunc) {
	segs := strings.Split(strings.Trim(template, "/"), "/")
	lit := 0
	for _, s := range segs {
		if !strings.HasPrefix(s, "{") {
			lit++
		}
	}
	rt.routes = append(rt.routes, &route{method: method, template: template, segs: segs, literals: lit, h: h})
	sort.SliceStable(rt.routes, func(i, j int) bool { return rt.routes[i].literals > rt.routes[j].literals })
}

// match finds the route for method and path. pathMatched reports whether some route
// matched the path with another method (-> 405).
func (rt *router) match(method, path string) (r *route, p params, pathMatched bool) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for _, cand := range rt.routes {
		if len(cand.segs) != len(segs) {
			continue
		}
		ps := params{}
		ok := true
		for i, s := range cand.segs {
			if strings.HasPrefix(s, "{") {
				// ids are numbers (possibly negative): "/v1/servers/1/actions/explode"
				// is an unknown action, not a GET of action "explode".
				if segs[i] == "" || strings.Trim(segs[i], "-0123456789") != "" {
					ok = false
					break
				}
				ps[strings.Trim(s, "{}")] = segs[i]
			} else if s != segs[i] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if cand.method != method {
			pathMatched = true
			continue
		}
		return cand, ps, true
	}
	return nil, nil, pathMatched
}
