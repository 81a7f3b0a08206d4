package hcloudsim

import (
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

func (s *Sim) firewallSchemaLocked(fw *firewall) schema.Firewall {
	out := schema.Firewall{ID: fw.ID, Name: fw.Name, Labels: copyLabels(&fw.Labels), Created: fw.Created,
		Rules: append([]schema.FirewallRule{}, fw.Rules...), AppliedTo: []schema.FirewallResource{}}
	for _, id := range fw.Servers {
		out.AppliedTo = append(out.AppliedTo, schema.FirewallResource{Type: "server", Server: &schema.FirewallResourceServer{ID: id}})
	}
	for _, sel := range fw.Selectors {
		res := schema.FirewallResource{Type: "label_selector", LabelSelector: &schema.FirewallResourceLabelSelector{Selector: sel}, AppliedToResources: []schema.FirewallResource{}}
		for _, id := range s.serversMatchingLocked(sel) {
			res.AppliedToResources = append(res.AppliedToResources, schema.FirewallResource{Type: "server", Server: &schema.FirewallResourceServer{ID: id}})
		}
		out.AppliedTo = append(out.AppliedTo, res)
	}
	return out
}

func (s *Sim) serversMatchingLocked(sel string) []int64 {
	ps, err := parseSelector(sel)
	if err != nil {
		return nil
	}
	var ids []int64
	for _, sv := range s.st.Servers {
		if ps.matches(sv.Labels) {
			ids = append(ids, sv.ID)
		}
	}
	sortItems(ids, nil, func(id int64, _ string) (int64, string, bool) { return id, "", true })
	return ids
}

// firewallsOfServerLocked lists the firewalls applied to a server directly or through a
// label selector.
func (s *Sim) firewallsOfServerLocked(sv *server) []int64 {
	ids := append([]int64{}, sv.Firewalls...)
	for _, fw := range s.st.Firewalls {
		for _, sel := range fw.Selectors {
			if ps, err := parseSelector(sel); err == nil && ps.matches(sv.Labels) && !containsID(ids, fw.ID) {
				ids = append(ids, fw.ID)
			}
		}
	}
	return ids
}

var portRe = regexp.MustCompile(`^(\d+)(-(\d+))?$`)

func validateRules(rules []schema.FirewallRuleRequest) ([]schema.FirewallRule, *apiError) {
	var out []schema.FirewallRule
	for i, r := range rules {
		field := fmt.Sprintf("rules[%d]", i)
		if r.Direction != "in" && r.Direction != "out" {
			return nil, invalidInput(field+".direction", "must be in or out")
		}
		switch r.Protocol {
		case "tcp", "udp":
			if r.Port == nil || *r.Port == "" {
				return nil, invalidInput(field+".port", "is required for tcp and udp")
			}
			if *r.Port != "any" {
				m := portRe.FindStringSubmatch(*r.Port)
				if m == nil {
					return nil, invalidInput(field+".port", "must be a port (80), a range (80-85) or any")
				}
				for _, p := range []string{m[1], m[3]} {
					if n, err := strconv.Atoi(p); p != "" && (err != nil || n < 1 || n > 65535) {
						return nil, invalidInput(field+".port", "ports are between 1 and 65535")
					}
				}
			}
		case "icmp", "esp", "gre":
			if r.Port != nil {
				return nil, invalidInput(field+".port", "is only allowed for tcp and udp")
			}
		default:
			return nil, invalidInput(field+".protocol", "must be tcp, udp, icmp, esp or gre")
		}
		ips := r.SourceIPs
		name := "source_ips"
		if r.Direction == "out" {
			ips, name = r.DestinationIPs, "destination_ips"
		}
		if len(ips) == 0 {
			return nil, invalidInput(field+"."+name, "is required for direction "+r.Direction)
		}
		for _, ip := range append(append([]string{}, r.SourceIPs...), r.DestinationIPs...) {
			if _, err := netip.ParsePrefix(ip); err != nil {
				return nil, invalidInput(field+"."+name, fmt.Sprintf("%q is not a CIDR (e.g. 0.0.0.0/0 or ::/0)", ip))
			}
		}
		out = append(out, schema.FirewallRule{Direction: r.Direction, Protocol: r.Protocol, Port: r.Port,
			SourceIPs: append([]string{}, r.SourceIPs...), DestinationIPs: append([]string{}, r.DestinationIPs...), Description: r.Description})
		if out[len(out)-1].SourceIPs == nil {
			out[len(out)-1].SourceIPs = []string{}
		}
		if out[len(out)-1].DestinationIPs == nil {
			out[len(out)-1].DestinationIPs = []string{}
		}
	}
	if out == nil {
		out = []schema.FirewallRule{}
	}
	return out, nil
}

func (s *Sim) firewallLocked(p params) (*firewall, *apiError) {
	id, e := pathID(p, "id", "firewall")
	if e != nil {
		return nil, e
	}
	fw, ok := s.st.Firewalls[id]
	if !ok {
		return nil, notFound("firewall", id)
	}
	return fw, nil
}

func (s *Sim) listFirewalls(r *http.Request, _ params) (int, any, *apiError) {
	lq, e := parseListQuery(r, "id", "name", "created")
	if e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []*firewall
	for _, fw := range s.st.Firewalls {
		if (lq.name != "" && fw.Name != lq.name) || !lq.sel.matches(fw.Labels) {
			continue
		}
		items = append(items, fw)
	}
	sortItems(items, lq.sort, func(fw *firewall, f string) (int64, string, bool) {
		if f == "created" {
			return fw.Created.UnixNano(), "", true
		}
		return numKey(f, fw.ID, fw.Name)
	})
	page, meta := paginate(items, lq)
	out := make([]schema.Firewall, 0, len(page))
	for _, fw := range page {
		out = append(out, s.firewallSchemaLocked(fw))
	}
	return 200, listResponse("firewalls", out, meta), nil
}

func (s *Sim) getFirewall(_ *http.Request, p params) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fw, e := s.firewallLocked(p)
	if e != nil {
		return 0, nil, e
	}
	return 200, schema.FirewallGetResponse{Firewall: s.firewallSchemaLocked(fw)}, nil
}

func (s *Sim) createFirewall(r *http.Request, _ params) (int, any, *apiError) {
	var req schema.FirewallCreateRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	if e := validateFreeName(req.Name); e != nil {
		return 0, nil, e
	}
	labels := copyLabels(req.Labels)
	if e := validateLabels(labels); e != nil {
		return 0, nil, e
	}
	rules, e := validateRules(req.Rules)
	if e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.st.Firewalls {
		if o.Name == req.Name {
			return 0, nil, uniqueness("name", "firewall name is already used")
		}
	}
	fw := &firewall{ID: s.st.newID(), Name: req.Name, Labels: labels, Created: s.clock.Now().UTC(), Rules: rules,
		Servers: []int64{}, Selectors: []string{}}
	actions, e := s.applyLocked(fw, req.ApplyTo, true)
	if e != nil {
		return 0, nil, e
	}
	s.st.Firewalls[fw.ID] = fw
	s.persistLocked()
	return http.StatusCreated, schema.FirewallCreateResponse{Firewall: s.firewallSchemaLocked(fw), Actions: actions}, nil
}

// applyLocked applies fw to resources (servers or label selectors). With dryRunFirst it
// validates everything before changing anything.
func (s *Sim) applyLocked(fw *firewall, res []schema.FirewallResource, _ bool) ([]schema.Action, *apiError) {
	for i, r := range res {
		switch r.Type {
		case "server":
			if r.Server == nil {
				return nil, invalidInput(fmt.Sprintf("apply_to[%d].server", i), "is required for type server")
			}
			sv, ok := s.st.Servers[r.Server.ID]
			if !ok {
				return nil, newError("firewall_resource_not_found", "server %d not found", r.Server.ID)
			}
			if containsID(sv.Firewalls, fw.ID) {
				return nil, newError("firewall_already_applied", "firewall %d is already applied to server %d", fw.ID, sv.ID)
			}
		case "label_selector":
			if r.LabelSelector == nil {
				return nil, invalidInput(fmt.Sprintf("apply_to[%d].label_selector", i), "is required for type label_selector")
			}
			if _, err := parseSelector(r.LabelSelector.Selector); err != nil || strings.TrimSpace(r.LabelSelector.Selector) == "" {
				return nil, invalidInput(fmt.Sprintf("apply_to[%d].label_selector", i), "is not a valid label selector")
			}
			if contains(fw.Selectors, r.LabelSelector.Selector) {
				return nil, newError("firewall_already_applied", "firewall %d is already applied to label selector %q", fw.ID, r.LabelSelector.Selector)
			}
		default:
			return nil, invalidInput(fmt.Sprintf("apply_to[%d].type", i), "must be server or label_selector")
		}
	}
	actions := []schema.Action{}
	for _, r := range res {
		if r.Type == "server" {
			sv := s.st.Servers[r.Server.ID]
			sv.Firewalls = append(sv.Firewalls, fw.ID)
			fw.Servers = append(fw.Servers, sv.ID)
			a := s.startActionLocked(actionSpec{command: "apply_firewall", resources: []schema.ActionResourceReference{ref("firewall", fw.ID), ref("server", sv.ID)}})
			actions = append(actions, a.schemaLocked())
		} else {
			fw.Selectors = append(fw.Selectors, r.LabelSelector.Selector)
			a := s.startActionLocked(actionSpec{command: "apply_firewall", resources: []schema.ActionResourceReference{ref("firewall", fw.ID)}})
			actions = append(actions, a.schemaLocked())
		}
	}
	return actions, nil
}

func (s *Sim) updateFirewall(r *http.Request, p params) (int, any, *apiError) {
	var req schema.FirewallUpdateRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fw, e := s.firewallLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if req.Name != nil && *req.Name != fw.Name {
		if e := validateFreeName(*req.Name); e != nil {
			return 0, nil, e
		}
		for _, o := range s.st.Firewalls {
			if o.Name == *req.Name {
				return 0, nil, uniqueness("name", "firewall name is already used")
			}
		}
	}
	if req.Labels != nil {
		if e := validateLabels(*req.Labels); e != nil {
			return 0, nil, e
		}
		fw.Labels = copyLabels(req.Labels)
	}
	if req.Name != nil {
		fw.Name = *req.Name
	}
	s.persistLocked()
	return 200, schema.FirewallUpdateResponse{Firewall: s.firewallSchemaLocked(fw)}, nil
}

func (s *Sim) deleteFirewall(_ *http.Request, p params) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fw, e := s.firewallLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if len(fw.Servers) > 0 || len(fw.Selectors) > 0 {
		return 0, nil, newError("resource_in_use", "firewall %d is still applied to resources; remove it from them first", fw.ID)
	}
	delete(s.st.Firewalls, fw.ID)
	s.persistLocked()
	return http.StatusNoContent, nil, nil
}

func (s *Sim) setFirewallRules(r *http.Request, p params) (int, any, *apiError) {
	var req schema.FirewallActionSetRulesRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	rules, e := validateRules(req.Rules)
	if e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fw, e := s.firewallLocked(p)
	if e != nil {
		return 0, nil, e
	}
	if s.isLocked("firewall", fw.ID) {
		return 0, nil, locked("firewall", fw.ID)
	}
	fw.Rules = rules
	actions := []schema.Action{s.startActionLocked(actionSpec{command: "set_firewall_rules", lock: true,
		resources: []schema.ActionResourceReference{ref("firewall", fw.ID)}}).schemaLocked()}
	for _, id := range fw.Servers {
		a := s.startActionLocked(actionSpec{command: "apply_firewall", resources: []schema.ActionResourceReference{ref("firewall", fw.ID), ref("server", id)}})
		actions = append(actions, a.schemaLocked())
	}
	s.persistLocked()
	return http.StatusCreated, schema.FirewallActionSetRulesResponse{Actions: actions}, nil
}

func (s *Sim) applyFirewall(r *http.Request, p params) (int, any, *apiError) {
	var req schema.FirewallActionApplyToResourcesRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fw, e := s.firewallLocked(p)
	if e != nil {
		return 0, nil, e
	}
	actions, e := s.applyLocked(fw, req.ApplyTo, false)
	if e != nil {
		return 0, nil, e
	}
	s.persistLocked()
	return http.StatusCreated, schema.FirewallActionApplyToResourcesResponse{Actions: actions}, nil
}

func (s *Sim) removeFirewall(r *http.Request, p params) (int, any, *apiError) {
	var req schema.FirewallActionRemoveFromResourcesRequest
	if e := decodeBody(r, &req); e != nil {
		return 0, nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fw, e := s.firewallLocked(p)
	if e != nil {
		return 0, nil, e
	}
	actions := []schema.Action{}
	for i, res := range req.RemoveFrom {
		switch {
		case res.Type == "server" && res.Server != nil:
			sv, ok := s.st.Servers[res.Server.ID]
			if !ok {
				return 0, nil, newError("firewall_resource_not_found", "server %d not found", res.Server.ID)
			}
			sv.Firewalls = removeID(sv.Firewalls, fw.ID)
			fw.Servers = removeID(fw.Servers, sv.ID)
			actions = append(actions, s.startActionLocked(actionSpec{command: "remove_firewall",
				resources: []schema.ActionResourceReference{ref("firewall", fw.ID), ref("server", sv.ID)}}).schemaLocked())
		case res.Type == "label_selector" && res.LabelSelector != nil:
			var keep []string
			for _, sel := range fw.Selectors {
				if sel != res.LabelSelector.Selector {
					keep = append(keep, sel)
				}
			}
			fw.Selectors = append([]string{}, keep...)
			actions = append(actions, s.startActionLocked(actionSpec{command: "remove_firewall",
				resources: []schema.ActionResourceReference{ref("firewall", fw.ID)}}).schemaLocked())
		default:
			return 0, nil, invalidInput(fmt.Sprintf("remove_from[%d]", i), "must be {type: server, server: {id}} or {type: label_selector, label_selector: {selector}}")
		}
	}
	s.persistLocked()
	return http.StatusCreated, schema.FirewallActionRemoveFromResourcesResponse{Actions: actions}, nil
}
