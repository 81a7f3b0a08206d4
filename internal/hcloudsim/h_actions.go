package hcloudsim

import (
	"net/http"
	"strconv"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// listActions serves GET /v1/actions (typ == "") and GET /v1/{resource}/actions and
// /v1/{resource}/{id}/actions. Filters: id (repeatable), status, sort.
func (s *Sim) listActions(typ string, perResource bool) handlerFunc {
	return func(r *http.Request, p params) (int, any, *apiError) {
		lq, e := parseListQuery(r, "id", "command", "status", "started", "finished")
		if e != nil {
			return 0, nil, e
		}
		var ids []int64
		for _, v := range lq.q["id"] {
			id, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, nil, invalidInput("id", "must be an integer")
			}
			ids = append(ids, id)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		var resID int64
		if perResource {
			var e *apiError
			if resID, e = s.resourceIDLocked(typ, p); e != nil {
				return 0, nil, e
			}
		}
		var items []schema.Action
		for _, a := range s.st.Actions {
			if len(ids) > 0 && !containsID(ids, a.ID) {
				continue
			}
			if len(lq.status) > 0 && !contains(lq.status, a.Status) {
				continue
			}
			if typ != "" && !touches(a, typ, resID) {
				continue
			}
			items = append(items, a.schemaLocked())
		}
		sortItems(items, lq.sort, func(a schema.Action, f string) (int64, string, bool) {
			switch f {
			case "command":
				return 0, a.Command, false
			case "status":
				return 0, a.Status, false
			case "started":
				return a.Started.UnixNano(), "", true
			case "finished":
				if a.Finished == nil {
					return 1<<63 - 1, "", true
				}
				return a.Finished.UnixNano(), "", true
			}
			return a.ID, "", true
		})
		page, meta := paginate(items, lq)
		return 200, listResponse("actions", page, meta), nil
	}
}

// touches reports whether a refers to a resource of typ (and id, unless id == 0).
func touches(a *action, typ string, id int64) bool {
	for _, r := range a.Resources {
		if r.Type == typ && (id == 0 || r.ID == id) {
			return true
		}
	}
	return false
}

func (s *Sim) resourceIDLocked(typ string, p params) (int64, *apiError) {
	id, e := pathID(p, "id", typ)
	if e != nil {
		return 0, e
	}
	var ok bool
	switch typ {
	case "server":
		_, ok = s.st.Servers[id]
	case "volume":
		_, ok = s.st.Volumes[id]
	case "firewall":
		_, ok = s.st.Firewalls[id]
	}
	if !ok {
		return 0, notFound(typ, id)
	}
	return id, nil
}

// getAction serves GET /v1/actions/{id}, /v1/{resource}/actions/{id} and
// /v1/{resource}/{id}/actions/{action_id}.
func (s *Sim) getAction(typ string, perResource bool) handlerFunc {
	return func(_ *http.Request, p params) (int, any, *apiError) {
		key := "id"
		if perResource {
			key = "action_id"
		}
		aid, e := pathID(p, key, "action")
		if e != nil {
			return 0, nil, e
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		var resID int64
		if perResource {
			if resID, e = s.resourceIDLocked(typ, p); e != nil {
				return 0, nil, e
			}
		}
		a, ok := s.st.Actions[aid]
		if !ok || (typ != "" && !touches(a, typ, resID)) {
			return 0, nil, notFound("action", aid)
		}
		return 200, schema.ActionGetResponse{Action: a.schemaLocked()}, nil
	}
}
