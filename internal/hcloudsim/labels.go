package hcloudsim

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	labelNameRe  = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$`)
	dnsLabelRe   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	labelValueRe = labelNameRe
)

// validateLabelKey applies the documented rule: an optional DNS-subdomain prefix and "/",
// then a name of at most 63 characters, alphanumeric at both ends with "-", "_", "."
// between. The "hetzner.cloud/" prefix is reserved.
func validateLabelKey(k string) error {
	name := k
	if i := strings.LastIndex(k, "/"); i >= 0 {
		prefix := k[:i]
		name = k[i+1:]
		if prefix == "" || len(prefix) > 253 {
			return fmt.Errorf("label key %q: prefix must be a DNS subdomain of at most 253 characters", k)
		}
		for _, l := range strings.Split(prefix, ".") {
			if len(l) > 63 || !dnsLabelRe.MatchString(l) {
				return fmt.Errorf("label key %q: prefix %q is not a DNS subdomain", k, prefix)
			}
		}
		if prefix == "hetzner.cloud" || strings.HasSuffix(prefix, ".hetzner.cloud") {
			return fmt.Errorf("label key %q: the hetzner.cloud/ prefix is reserved", k)
		}
	}
	if name == "" || len(name) > 63 || !labelNameRe.MatchString(name) {
		return fmt.Errorf("label key %q: name must be 1-63 characters, alphanumeric at both ends, with '-', '_', '.' between", k)
	}
	return nil
}

func validateLabelValue(v string) error {
	if v == "" {
		return nil
	}
	if len(v) > 63 || !labelValueRe.MatchString(v) {
		return fmt.Errorf("label value %q: must be at most 63 characters, empty or alphanumeric at both ends, with '-', '_', '.' between", v)
	}
	return nil
}

// validateLabels returns an invalid_input error for the "labels" field, or nil.
func validateLabels(labels map[string]string) *apiError {
	var msgs []string
	for k, v := range labels {
		if err := validateLabelKey(k); err != nil {
			msgs = append(msgs, err.Error())
		}
		if err := validateLabelValue(v); err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) > 0 {
		return invalidInput("labels", msgs...)
	}
	return nil
}

// selector is a parsed label selector: every requirement must hold.
type selector []requirement

type requirement struct {
	key    string
	op     string // "exists", "!exists", "=", "!=", "in", "notin"
	values []string
}

var setExprRe = regexp.MustCompile(`^([^\s!=(),]+)\s+(in|notin)\s+\((.*)\)$`)

// parseSelector parses Hetzner's label selector syntax: k, !k, k=v, k==v, k!=v,
// k in (a,b), k notin (a,b), joined by commas (commas inside parentheses belong to the set).
func parseSelector(s string) (selector, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var terms []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
			if depth > 1 {
				return nil, fmt.Errorf("nested parentheses")
			}
		case ')':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("unbalanced parentheses")
			}
		case ',':
			if depth == 0 {
				terms = append(terms, s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced parentheses")
	}
	terms = append(terms, s[start:])
	var sel selector
	for _, t := range terms {
		t = strings.TrimSpace(t)
		if t == "" {
			return nil, fmt.Errorf("empty requirement")
		}
		req, err := parseRequirement(t)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", t, err)
		}
		sel = append(sel, req)
	}
	return sel, nil
}

func parseRequirement(t string) (requirement, error) {
	if m := setExprRe.FindStringSubmatch(t); m != nil {
		r := requirement{key: m[1], op: m[2]}
		for _, v := range strings.Split(m[3], ",") {
			v = strings.TrimSpace(v)
			if err := validateLabelValue(v); err != nil {
				return r, err
			}
			r.values = append(r.values, v)
		}
		return r, validateLabelKey(r.key)
	}
	var r requirement
	switch {
	case strings.HasPrefix(t, "!") && !strings.Contains(t, "="):
		r = requirement{key: strings.TrimSpace(t[1:]), op: "!exists"}
	case strings.Contains(t, "!="):
		k, v, _ := strings.Cut(t, "!=")
		r = requirement{key: strings.TrimSpace(k), op: "!=", values: []string{strings.TrimSpace(v)}}
	case strings.Contains(t, "=="):
		k, v, _ := strings.Cut(t, "==")
		r = requirement{key: strings.TrimSpace(k), op: "=", values: []string{strings.TrimSpace(v)}}
	case strings.Contains(t, "="):
		k, v, _ := strings.Cut(t, "=")
		r = requirement{key: strings.TrimSpace(k), op: "=", values: []string{strings.TrimSpace(v)}}
	default:
		r = requirement{key: t, op: "exists"}
	}
	if err := validateLabelKey(r.key); err != nil {
		return r, err
	}
	for _, v := range r.values {
		if strings.ContainsAny(v, "=!() ") {
			return r, fmt.Errorf("invalid value %q", v)
		}
		if err := validateLabelValue(v); err != nil {
			return r, err
		}
	}
	return r, nil
}

func (sel selector) matches(labels map[string]string) bool {
	for _, r := range sel {
		v, ok := labels[r.key]
		switch r.op {
		case "exists":
			if !ok {
				return false
			}
		case "!exists":
			if ok {
				return false
			}
		case "=":
			if !ok || v != r.values[0] {
				return false
			}
		case "!=":
			if ok && v == r.values[0] {
				return false
			}
		case "in":
			if !ok || !contains(r.values, v) {
				return false
			}
		case "notin":
			if ok && contains(r.values, v) {
				return false
			}
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
